"""`AnalogConv2d`: ``nn.Conv2d`` whose product runs on the hardware surrogate.

Each output pixel is one crossbar read of the flattened patch (C_in/groups * kh * kw
word lines); tiles hold whole input channels. x: (N, C_in, H, W) -> (N, C_out, H', W').
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.profile import HardwareProfile
from ..hardware.tiling import ConvMVM, RowTiling, layer_row_tiling
from .base import AnalogLayerMixin, check_sizes

CONV_ARGS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
)


def conv_constructor_args(module: nn.Module, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The constructor arguments of a torch convolution ``module`` (any dimension, the
    transposed ones with ``extra=("output_padding",)``), ``bias`` as a flag."""
    return {name: getattr(module, name) for name in (*CONV_ARGS, *extra)} | {
        "bias": module.bias is not None
    }


class AnalogConvMixin(AnalogLayerMixin):
    """What every analog ``nn.ConvNd`` shares: construction (explicit integer padding),
    tiling and the forward (shape checks, unbatched inputs, the digital fast path, padding
    modes). A subclass names its input shape (``spatial_shape``) and runs its padded input
    on the crossbar in :meth:`_analog_conv`."""

    spatial_shape: str  # the input's spatial dimensions, for messages: "L" or "H, W"

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        return conv_constructor_args(module)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        name = type(self).__name__
        check_sizes(name, in_channels=in_channels, out_channels=out_channels, groups=groups)
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
            raise ValueError(f"padding={self.padding!r}: {name} needs explicit integer padding")
        self._init_analog(profile, noise_seed)

    def row_tiling(self, profile: HardwareProfile) -> RowTiling:
        return layer_row_tiling(self.weight.shape, profile.tile_rows)

    def _analog_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The crossbar convolution of a batched input, already padded."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hint = f"(N, {self.in_channels}, {self.spatial_shape})"
        self.check_input(x, self.in_channels, hint)
        batched = self.weight.dim()  # (N, C, *spatial) has as many dimensions as the weight
        if x.dim() == batched - 1:  # one unbatched input, as nn.ConvNd takes it
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.dim() != batched:
            raise ValueError(
                f"{self.describe()}: expected an input of shape {hint} or "
                f"({self.in_channels}, {self.spatial_shape}), got {tuple(x.shape)}"
            )
        if x.numel() == 0:  # an empty batch, as nn.ConvNd returns it
            return self._conv_forward(x, self.weight, self.bias)
        if self.use_digital_path():
            if not self._range_ready:  # a later non-ideal use (chip, backend) needs it
                self._init_input_range(x)
            return self._conv_forward(x, self.weight, self.bias)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        return self._analog_conv(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.analog_extra_repr()}"


class AnalogConv2d(AnalogConvMixin, nn.Conv2d):
    """2-D convolution on analog hardware (subclass of ``nn.Conv2d``)."""

    digital_type = nn.Conv2d
    spatial_shape = "H, W"

    def _build_mvm(self, tiling: RowTiling) -> ConvMVM:
        padding = self.padding if self.padding_mode == "zeros" else (0, 0)
        return ConvMVM(
            tiling,
            self.kernel_size,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            self.out_channels,
        )

    def _analog_conv(self, x: torch.Tensor) -> torch.Tensor:
        return self.analog_forward(x, self.bias)
