"""Low-precision *digital* layers (fixed-point weights, no analog noise).

``y = s ⊙ Q_b(W / s) x + b`` with ``s_j = max_i |W_ji|`` per output row (for a convolution,
per output channel over its ``C_in · k_h · k_w`` kernel entries) and ``Q_b`` the ``b``-bit
symmetric weight grid of :func:`analogtorch.hardware.mapping.normalized_weights`
(straight-through gradients). These are the digital parameterisation and read-out of a hybrid
analog–digital model: they run on a digital unit, so the energy model costs them as digital
MACs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.mapping import held_weights
from ..hardware.profile import HardwareProfile


class _QuantizedWeights:
    """The ``weight_bits``-bit per-row weight grid shared by the digital layers."""

    weight: torch.Tensor

    def _init_grid(self, weight_bits: int | None) -> None:
        if weight_bits is not None and not 2 <= weight_bits <= 16:
            raise ValueError(f"weight_bits={weight_bits}: use an integer in [2, 16] or None")
        self.weight_bits = weight_bits
        self._grid = HardwareProfile.preset("ideal").replace(weight_bits=weight_bits)

    def quantized_weight(self) -> torch.Tensor:
        """``s ⊙ Q_b(W / s)``, the weights the digital unit multiplies with."""
        if self.weight_bits is None:
            return self.weight
        return held_weights(self.weight, self._grid)


class QuantizedLinear(_QuantizedWeights, nn.Linear):
    """``nn.Linear`` with ``weight_bits``-bit per-row weights (``None``: full precision)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight_bits: int | None = 8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_grid(weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}"


class QuantizedConv2d(_QuantizedWeights, nn.Conv2d):
    """``nn.Conv2d`` with ``weight_bits``-bit per-output-channel weights (``None``: full
    precision). x: (N, C_in, H, W) → (N, C_out, H', W'), as ``nn.Conv2d``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        bias: bool = True,
        *,
        weight_bits: int | None = 8,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self._init_grid(weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}"
