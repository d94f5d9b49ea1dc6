"""Splitting a layer's matrix-vector products over crossbar tiles.

A layer's flattened weight ``W`` (out, n_rows) is cut along its inputs into ``n_tiles``
tiles of ``rows_per_tile`` word lines each (balanced: ``rows_per_tile = ceil(n_rows /
n_tiles)``, the last tile zero-padded). Every tile has its own column ADCs, so the
surrogate receives the partial sums ``y_t = W_t x_t`` (tile axis ``tile_dim``: first for a
linear layer, so each tile's block is one contiguous batched GEMM output; second for a
convolution) and digitises each before the digital accumulation ``y = sum_t ADC(y_t)``. For a
convolution, a tile holds whole input channels (all kernel taps of a channel stay in one
tile), and the partial sums are one grouped convolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RowTiling:
    """How ``n_rows`` inputs are laid out over ``n_tiles`` tiles of ``rows_per_tile`` rows."""

    n_rows: int
    n_tiles: int
    rows_per_tile: int

    @classmethod
    def balanced(cls, n_rows: int, tile_rows: int, unit: int = 1) -> RowTiling:
        """Fewest tiles of at most ``tile_rows`` rows; tiles hold whole ``unit``-row groups."""
        if unit > tile_rows:
            raise ValueError(
                f"tile_rows={tile_rows} is smaller than one input channel's {unit} kernel taps; "
                f"use tile_rows >= {unit}"
            )
        n_units = math.ceil(n_rows / unit)
        n_tiles = math.ceil(n_units / (tile_rows // unit))
        return cls(n_rows, n_tiles, math.ceil(n_units / n_tiles) * unit)

    @property
    def padded_rows(self) -> int:
        return self.n_tiles * self.rows_per_tile

    def pad_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Zero-pad the last (input-row) axis from ``n_rows`` to ``padded_rows``."""
        extra = self.padded_rows - self.n_rows
        return F.pad(t, (0, extra)) if extra else t

    def pad(self, w_flat: torch.Tensor) -> torch.Tensor:
        """(lead, n_rows) -> (lead, n_tiles, rows_per_tile), zero rows appended."""
        return self.pad_rows(w_flat).reshape(w_flat.shape[0], self.n_tiles, self.rows_per_tile)

    def unpad(self, w_tiled: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`pad`."""
        return w_tiled.reshape(w_tiled.shape[0], -1)[:, : self.n_rows]


def layer_row_tiling(weight_shape: torch.Size | tuple[int, ...], tile_rows: int) -> RowTiling:
    """Tiling of a linear ``(out, in)`` or convolution ``(out, in/groups, kh, kw)`` weight.

    A convolution tile holds whole input channels: all ``kh*kw`` taps of a channel.
    """
    taps = math.prod(weight_shape[2:])
    return RowTiling.balanced(math.prod(weight_shape[1:]), tile_rows, unit=taps)


class _TiledProduct(torch.autograd.Function):
    """Per-tile products ``y_t = x_t W_t^T`` -> (tiles, batch, out), with a backward that
    writes both gradients in the row-major layouts of ``x`` (batch, tiles*rows) and ``W``
    (out, tiles*rows) by block copies (autograd's generic bmm backward would transpose
    the weight gradient element by element)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, w: torch.Tensor, n_tiles: int
    ) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.n_tiles = n_tiles  # type: ignore[attr-defined]
        x_t = x.reshape(x.shape[0], n_tiles, -1).transpose(0, 1)
        w_t = w.reshape(w.shape[0], n_tiles, -1).transpose(0, 1)
        return torch.bmm(x_t, w_t.transpose(1, 2))

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, w = ctx.saved_tensors  # type: ignore[attr-defined]
        n_tiles = ctx.n_tiles  # type: ignore[attr-defined]
        x_t = x.reshape(x.shape[0], n_tiles, -1).transpose(0, 1)
        w_t = w.reshape(w.shape[0], n_tiles, -1).transpose(0, 1)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_x = torch.bmm(grad, w_t).transpose(0, 1).reshape(x.shape)
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_w = torch.bmm(grad.transpose(1, 2), x_t).transpose(0, 1).reshape(w.shape)
        return grad_x, grad_w, None


class LinearMVM:
    """Tiled products for a fully connected layer: x (batch, in) -> (tiles, batch, out)."""

    tile_dim = 0

    def __init__(self, tiling: RowTiling) -> None:
        self.tiling = tiling

    def partial(self, x: torch.Tensor, w_flat: torch.Tensor) -> torch.Tensor:
        """Per-tile partial sums ``y_t = W_t x_t``, shape (tiles, batch, out)."""
        if self.tiling.n_tiles == 1:
            return (x @ w_flat.T).unsqueeze(0)
        t = self.tiling
        return _TiledProduct.apply(t.pad_rows(x), t.pad_rows(w_flat), t.n_tiles)

    def tile_products(self, x: torch.Tensor, w_flat: torch.Tensor) -> Iterator[torch.Tensor]:
        """The partial sums ``W_t x_t`` one tile at a time, each (batch, out) (no autograd):
        a consumer that reduces them as they come keeps one tile's block in cache."""
        rows = self.tiling.rows_per_tile
        for t in range(self.tiling.n_tiles):
            yield x[:, t * rows : (t + 1) * rows] @ w_flat[:, t * rows : (t + 1) * rows].T

    def tile_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Per-tile sums over the inputs, shape (tiles, batch, 1)."""
        if self.tiling.n_tiles == 1:
            return x.sum(dim=1, keepdim=True).unsqueeze(0)
        return self.tiling.pad(x).sum(dim=2).T.unsqueeze(2)

    def scale_shape(self, n_out: int) -> tuple[int, ...]:
        return (1, n_out)


class ConvMVM:
    """Tiled products for a 2-D convolution: x (B, C, H, W) -> (B, tiles, out, H', W')."""

    tile_dim = 1

    def __init__(
        self,
        tiling: RowTiling,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        out_channels: int,
    ) -> None:
        if groups != 1 and tiling.n_tiles != 1:
            raise ValueError(
                f"grouped convolution (groups={groups}) needs each group's inputs in one tile; "
                f"{tiling.n_rows} rows exceed tile_rows: raise tile_rows"
            )
        self.tiling = tiling
        self.kernel_size = kernel_size
        self.conv_args = {"stride": stride, "padding": padding, "dilation": dilation}
        self.groups = groups
        self.out_channels = out_channels
        taps = kernel_size[0] * kernel_size[1]
        self.channels_per_tile = tiling.rows_per_tile // taps
        self.in_channels = tiling.n_rows // taps

    def _pad_channels(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in channels-last layout, zero channels appended up to whole tiles.

        oneDNN's grouped convolution (one group per tile) is 1.3-2x faster on
        channels-last tensors; the layout then carries on through the network.
        """
        x = x.contiguous(memory_format=torch.channels_last)
        extra = self.tiling.n_tiles * self.channels_per_tile - x.shape[1]
        if not extra:
            return x
        shape = (x.shape[0], extra, *x.shape[2:])
        zeros = torch.empty(shape, dtype=x.dtype, device=x.device).zero_()
        return torch.cat([x, zeros.contiguous(memory_format=torch.channels_last)], dim=1)

    def partial(self, x: torch.Tensor, w_flat: torch.Tensor) -> torch.Tensor:
        """Per-tile partial sums as one grouped convolution."""
        n_out, n_tiles = w_flat.shape[0], self.tiling.n_tiles
        if n_tiles == 1:
            w = w_flat.reshape(n_out, -1, *self.kernel_size)
            x = x.contiguous(memory_format=torch.channels_last)
            return F.conv2d(x, w, groups=self.groups, **self.conv_args).unsqueeze(1)
        w = self.tiling.pad(w_flat).reshape(
            n_out, n_tiles, self.channels_per_tile, *self.kernel_size
        )
        w = w.transpose(0, 1).reshape(n_tiles * n_out, self.channels_per_tile, *self.kernel_size)
        y = F.conv2d(self._pad_channels(x), w, groups=n_tiles, **self.conv_args)
        return y.reshape(y.shape[0], n_tiles, n_out, *y.shape[2:])

    def tile_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Per-tile sums of ``x`` over each output's receptive field.

        Shape (B, tiles, 1, H', W'); for a grouped convolution (one tile, each group its
        own inputs) (B, 1, out, H', W'), each output summing over its own group's inputs.
        """
        n_tiles = self.tiling.n_tiles
        if self.groups != 1:
            ones = x.new_ones(self.groups, self.in_channels, *self.kernel_size)
            y = F.conv2d(x, ones, groups=self.groups, **self.conv_args)
            return y.repeat_interleave(self.out_channels // self.groups, dim=1).unsqueeze(1)
        # Sum each tile's channels first, then one k x k box filter per tile (depthwise):
        # an all-ones kernel over (tile channels x k x k) as one cheap pass.
        x = self._pad_channels(x)
        per_tile = x.unflatten(1, (n_tiles, -1)).sum(2)  # (B, tiles, H, W)
        ones = x.new_ones(n_tiles, 1, *self.kernel_size)
        return F.conv2d(per_tile, ones, groups=n_tiles, **self.conv_args).unsqueeze(2)

    def scale_shape(self, n_out: int) -> tuple[int, ...]:
        return (1, n_out, 1, 1)
