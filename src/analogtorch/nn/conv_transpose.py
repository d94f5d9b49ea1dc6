"""`AnalogConvTranspose2d`: ``nn.ConvTranspose2d`` whose product runs on the hardware surrogate.

A transposed convolution (stride ``s``, padding ``p``, dilation ``d``, output padding ``q``,
kernel ``k``) equals a stride-1 convolution, dilation ``d``, of the zero-stuffed input
``z``: ``s - 1`` zeros between neighbouring pixels, ``P = d (k - 1) - p`` zeros on each side
(``-P`` rows/columns cropped when negative) and ``q`` more at the bottom/right, with the
kernel transposed in its channel axes and flipped in space. Per group ``g`` (C_in/groups
inputs, C_out/groups outputs):

``W_c[g C_out/groups + o, i, u, v] = W[g C_in/groups + i, o, kh - 1 - u, kw - 1 - v]``.

The crossbar holds ``W_c`` (out, in/groups, kh, kw), rows = output channels, so each output
pixel is one crossbar read of a (C_in/groups * kh * kw) patch of ``z`` on
:class:`~analogtorch.hardware.tiling.ConvMVM`, with the tiling, noise, quantisation and chips
of ``AnalogConv2d``; the stuffed zeros are inputs at 0 V. The torch parameter keeps the
(in, out/groups, kh, kw) layout, so state dicts match ``nn.ConvTranspose2d``.
x: (N, C_in, H, W) or (C_in, H, W) -> (N, C_out, H', W') or (C_out, H', W'),
``H' = (H - 1) s - 2 p + d (k - 1) + q + 1``.
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


def crossbar_from_transposed(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``W_c`` (out, in/groups, *k) of a transposed-convolution weight ``W`` (in,
    out/groups, *k): channel axes swapped within each group, kernel flipped in space
    (differentiable; same units)."""
    c_in, out_per_group, *kernel = weight.shape
    spatial = tuple(range(2, weight.dim()))
    w = weight.reshape(groups, c_in // groups, out_per_group, *kernel).transpose(1, 2)
    return w.reshape(groups * out_per_group, c_in // groups, *kernel).flip(spatial)


def transposed_from_crossbar(w_c: torch.Tensor, groups: int) -> torch.Tensor:
    """Inverse of :func:`crossbar_from_transposed`: (out, in/groups, *k) -> (in, out/groups, *k)."""
    c_out, in_per_group, *kernel = w_c.shape
    spatial = tuple(range(2, w_c.dim()))
    w = w_c.flip(spatial).reshape(groups, c_out // groups, in_per_group, *kernel).transpose(1, 2)
    return w.reshape(groups * in_per_group, c_out // groups, *kernel)


class AnalogConvTranspose2d(AnalogLayerMixin, nn.ConvTranspose2d):
    """2-D transposed convolution on analog hardware (subclass of ``nn.ConvTranspose2d``)."""

    digital_type = nn.ConvTranspose2d

    @staticmethod
    def constructor_args(module: nn.Module) -> dict[str, Any]:
        return conv_constructor_args(module, ("output_padding",))

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        *,
        profile: HardwareProfile,
        noise_seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_sizes(
            "AnalogConvTranspose2d",
            in_channels=in_channels,
            out_channels=out_channels,
            groups=groups,
        )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            output_padding,
            groups,
            bias,
            dilation,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in self.padding):
            raise ValueError(
                f"padding={padding!r}: AnalogConvTranspose2d needs explicit integer padding"
            )
        for q, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if not 0 <= q < max(s, d):
                raise ValueError(
                    f"output_padding={self.output_padding}: each entry must be >= 0 and smaller "
                    f"than the stride {self.stride} or the dilation {self.dilation} of its axis"
                )
        self._init_analog(profile, noise_seed)

    def crossbar_weight(self) -> torch.Tensor:
        """``W_c`` (out, in/groups, kh, kw), see the module docstring."""
        return crossbar_from_transposed(self.weight, self.groups)

    def weight_from_crossbar(self, w_c: torch.Tensor) -> torch.Tensor:
        return transposed_from_crossbar(w_c, self.groups)

    def row_tiling(self, profile: HardwareProfile) -> RowTiling:
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return layer_row_tiling(shape, profile.tile_rows)

    def _build_mvm(self, tiling: RowTiling) -> ConvMVM:
        return ConvMVM(
            tiling,
            self.kernel_size,
            (1, 1),
            (0, 0),
            self.dilation,
            self.groups,
            self.out_channels,
        )

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """``output_size`` ((H', W') or with the leading dims) picks the output padding, as in
        ``nn.ConvTranspose2d``."""
        self.check_input(x, self.in_channels, f"(N, {self.in_channels}, H, W)")
        if x.dim() not in (3, 4):
            raise ValueError(
                f"{self.describe()}: expected an input of shape (N, {self.in_channels}, H, W) "
                f"or ({self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        output_padding = self._output_padding(
            x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        out_hw = [
            (n - 1) * s - 2 * p + d * (k - 1) + q + 1
            for n, s, p, d, k, q in zip(
                x.shape[-2:],
                self.stride,
                self.padding,
                self.dilation,
                self.kernel_size,
                output_padding,
                strict=True,
            )
        ]
        if min(out_hw) < 1:
            raise ValueError(
                f"{self.describe()}: an input of shape {tuple(x.shape)} gives an empty output "
                f"({out_hw[0]} x {out_hw[1]}); use a larger input or less padding"
            )
        if x.numel() == 0 or self.use_digital_path():
            if x.numel() and not self._range_ready:  # a later non-ideal use needs it
                self._init_input_range(x)
            return F.conv_transpose2d(
                x,
                self.weight,
                self.bias,
                self.stride,
                self.padding,
                output_padding,
                self.groups,
                self.dilation,
            )
        if x.dim() == 3:  # one unbatched image, as nn.ConvTranspose2d takes it
            return self.analog_forward(self._stuffed(x.unsqueeze(0), output_padding), self.bias)[0]
        return self.analog_forward(self._stuffed(x, output_padding), self.bias)

    def _stuffed(self, x: torch.Tensor, output_padding: list[int]) -> torch.Tensor:
        """The stride-1 convolution's input ``z`` (module docstring), (N, C_in, H_z, W_z)."""
        sh, sw = self.stride
        if (sh, sw) != (1, 1):
            n, c, h, w = x.shape
            z = x.new_zeros(n, c, (h - 1) * sh + 1, (w - 1) * sw + 1)
            z[:, :, ::sh, ::sw] = x
            x = z
        ph, pw = (
            d * (k - 1) - p
            for d, k, p in zip(self.dilation, self.kernel_size, self.padding, strict=True)
        )
        qh, qw = output_padding
        return F.pad(x, (pw, pw + qw, ph, ph + qh))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.analog_extra_repr()}"
