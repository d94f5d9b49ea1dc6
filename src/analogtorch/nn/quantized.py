"""`QuantizedLinear`: a low-precision *digital* layer (fixed-point weights, no analog noise).

``y = s ⊙ Q_b(W / s) x + b`` with ``s_j = max_i |W_ji|`` per output row and ``Q_b`` the
``b``-bit symmetric weight grid of :func:`analogtorch.hardware.mapping.normalized_weights`
(straight-through gradients). This is the digital parameterisation and read-out of a hybrid
analog–digital model: it runs on a digital unit, so the energy model costs it as digital MACs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.mapping import held_weights
from ..hardware.profile import HardwareProfile


class QuantizedLinear(nn.Linear):
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
        if weight_bits is not None and not 2 <= weight_bits <= 16:
            raise ValueError(f"weight_bits={weight_bits}: use an integer in [2, 16] or None")
        self.weight_bits = weight_bits
        self._grid = HardwareProfile.preset("ideal").replace(weight_bits=weight_bits)

    def quantized_weight(self) -> torch.Tensor:
        """``s ⊙ Q_b(W / s)``, the weights the digital unit multiplies with."""
        if self.weight_bits is None:
            return self.weight
        return held_weights(self.weight, self._grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}"
