"""`AnalogConv1d`: ``nn.Conv1d`` whose product runs on the hardware surrogate.

``y[n, o, l] = sum_{i, u} W[o, i, u] x[n, g(o) C_in/groups + i, l s - p + u d] + b[o]``, each
output position ``l`` one crossbar read of the flattened patch (C_in/groups * k word lines,
rows ordered (channel, tap) as the (out, in/groups, k) weight flattens). It runs as the 2-D
crossbar convolution of :class:`~analogtorch.hardware.tiling.ConvMVM` with a (1, k) kernel on
the input seen as one-pixel-high images, so tiling, noise, quantisation and chips are those of
``AnalogConv2d``. x: (N, C_in, L) or (C_in, L) -> (N, C_out, L') or (C_out, L').
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.profile import HardwareProfile
from ..hardware.tiling import ConvMVM, RowTiling, layer_row_tiling
from .base import AnalogLayerMixin, check_sizes
from .conv import conv_constructor_args


class AnalogConv1d(AnalogLayerMixin, nn.Conv1d):
    """1-D convolution on analog hardware (subclass of ``nn.Conv1d``; same weight layout
    (out, in/groups, k) and state dict)."""

    digital_type = nn.Conv1d

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        return conv_constructor_args(module)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: int | tuple[int] | str = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_sizes(
            "AnalogConv1d", in_channels=in_channels, out_channels=out_channels, groups=groups
        )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        if isinstance(self.padding, str):
            raise ValueError(
                f"padding={self.padding!r}: AnalogConv1d needs explicit integer padding"
            )
        self._init_analog(profile, noise_seed)

    def row_tiling(self, profile: HardwareProfile) -> RowTiling:
        return layer_row_tiling(self.weight.shape, profile.tile_rows)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x, self.in_channels, f"(N, {self.in_channels}, L)")
        if x.dim() == 2:  # one unbatched sequence, as nn.Conv1d takes it
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.dim() != 3:
            raise ValueError(
                f"{self.describe()}: expected an input of shape (N, {self.in_channels}, L) "
                f"or ({self.in_channels}, L), got {tuple(x.shape)}"
            )
        if x.numel() == 0:  # an empty batch, as nn.Conv1d returns it
            return self._conv_forward(x, self.weight, self.bias)
        if self.use_digital_path():
            if not self._range_ready:  # a later non-ideal use (chip, backend) needs it
                self._init_input_range(x)
            return self._conv_forward(x, self.weight, self.bias)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        return self.analog_forward(x.unsqueeze(2), self.bias).squeeze(2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.analog_extra_repr()}"
