"""`AnalogLinear`: ``nn.Linear`` whose product runs on the hardware surrogate.

``y = S(x, W) + b`` with ``S`` from :func:`analogtorch.hardware.surrogate.surrogate_forward`;
x: (..., in_features), y: (..., out_features). The bias is digital (added after the ADC).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.profile import HardwareProfile
from ..hardware.tiling import LinearMVM, RowTiling, layer_row_tiling
from .base import AnalogLayerMixin, check_sizes


class AnalogLinear(AnalogLayerMixin, nn.Linear):
    """Fully connected layer on analog hardware (subclass of ``nn.Linear``)."""

    digital_type = nn.Linear

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        return {
            "in_features": module.in_features,
            "out_features": module.out_features,
            "bias": module.bias is not None,
        }

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_sizes("AnalogLinear", in_features=in_features, out_features=out_features)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_analog(profile, noise_seed)

    def row_tiling(self, profile: HardwareProfile) -> RowTiling:
        return layer_row_tiling(self.weight.shape, profile.tile_rows)

    def _build_mvm(self, tiling: RowTiling) -> LinearMVM:
        return LinearMVM(tiling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x, self.in_features, f"(..., {self.in_features})")
        if x.numel() == 0:  # an empty batch, as nn.Linear returns it
            return F.linear(x, self.weight, self.bias)
        if self.use_digital_path():
            if not self._range_ready:  # a later non-ideal use (chip, backend) needs it
                self._init_input_range(x)
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        y = self.analog_forward(x.reshape(-1, self.in_features), self.bias)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.analog_extra_repr()}"
