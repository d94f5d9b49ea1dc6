"""`AnalogConv1d`: ``nn.Conv1d`` whose product runs on the hardware surrogate.

``y[n, o, l] = sum_{i, u} W[o, i, u] x[n, g(o) C_in/groups + i, l s - p + u d] + b[o]``, each
output position ``l`` one crossbar read of the flattened patch (C_in/groups * k word lines,
rows ordered (channel, tap) as the (out, in/groups, k) weight flattens). It runs as the 2-D
crossbar convolution of :class:`~analogtorch.hardware.tiling.ConvMVM` with a (1, k) kernel on
the input seen as one-pixel-high images, so tiling, noise, quantisation and chips are those of
``AnalogConv2d``. x: (N, C_in, L) or (C_in, L) -> (N, C_out, L') or (C_out, L').
"""

from __future__ import annotations

import torch
from torch import nn

from ..hardware.tiling import ConvMVM, RowTiling
from .conv import AnalogConvMixin


class AnalogConv1d(AnalogConvMixin, nn.Conv1d):
    """1-D convolution on analog hardware (subclass of ``nn.Conv1d``; same weight layout
    (out, in/groups, k) and state dict)."""

    digital_type = nn.Conv1d
    spatial_shape = "L"

    def _build_mvm(self, tiling: RowTiling) -> ConvMVM:
        padding = self.padding[0] if self.padding_mode == "zeros" else 0
        return ConvMVM(
            tiling,
            (1, self.kernel_size[0]),
            (1, self.stride[0]),
            (0, padding),
            (1, self.dilation[0]),
            self.groups,
            self.out_channels,
        )

    def _analog_conv(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, L) as one-pixel-high images (N, C, 1, L)
        return self.analog_forward(x.unsqueeze(2), self.bias).squeeze(2)
