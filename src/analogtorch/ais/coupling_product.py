"""The coupling product ``J s`` of an AIS drift, dense or exploiting a local mask.

Every drift evaluation needs ``signal @ J^T`` for row-vector states ``signal`` (n, n_units)
and the effective coupling matrix ``J`` of the run (fixed over one integration). A product
object is built from ``J`` once per integration and called at every drift evaluation:

* :class:`DenseProduct`: ``signal @ J^T``, for any mask.
* :class:`LocalProduct`: the same numbers for the ``"local"`` mask of
  :func:`~analogtorch.ais.couplings.connectivity_mask`, where the first ``H·W`` (grid) units
  couple only to grid units within Chebyshev distance ``r`` and the remaining (hidden) units
  to every unit. Grid ← grid is cut into tiles of ``b × t`` pixels; a tile's outputs depend
  only on the ``(b + 2r) × (t + 2r)`` window of the zero-padded grid around it, so the
  product is one batched matmul over tiles, ``(n, C) @ (C, b·t)`` with ``C = (b + 2r)(t +
  2r)``, of the signal's windows (strided views of the padded grid) and the tiles' blocks of
  ``J`` (gathered once per integration, ``0`` for pairs off the mask or off the grid). Grid ←
  hidden and hidden ← all are dense products on the hidden columns and rows of ``J``. Cost
  per sample ``H·W·C + n_hidden · (H·W + n_units)`` multiplies instead of ``n_units²``.

Both are built from the dense ``J`` with differentiable indexing, so the gradients with
respect to ``J`` on the mask (and hence those of the couplings' parameters, through
quantisation and programming noise) are those of the dense product. :class:`LocalProduct`
reads ``J`` only at the mask's grid pairs and in the hidden rows and columns; the grid pairs
off the mask, which the couplings set to exactly ``0``, are skipped and get no gradient.

Measured on one CPU thread (``benchmarks/bench_ais_coupling.py``), the local product pays off
only for large grids; :func:`choose_product` picks by the number of units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Below this many units the dense matmul beats the tiled product (one CPU thread: dense wins
# at 14 x 14 + 64 hidden = 260 units, local at 28 x 28 + 64 = 848; see the benchmark).
LOCAL_MIN_UNITS = 512
# Tile side (pixels) of the local product: larger tiles mean fewer, bigger matmuls but more
# multiplies by zero (window (b + 2r)(t + 2r) vs the (2r + 1)² neighbours that couple).
TILE = 7

PRODUCTS = ("auto", "dense", "local")


class DenseProduct:
    """``signal @ J^T`` with the dense ``J`` (n_units, n_units)."""

    def __init__(self, couplings: torch.Tensor) -> None:
        self.couplings = couplings

    def __call__(self, signal: torch.Tensor) -> torch.Tensor:
        return signal @ self.couplings.T


class LocalStencil:
    """Layout of a ``"local"`` mask: a ``grid_shape = (H, W)`` grid of the first ``H·W``
    units (row-major), Chebyshev radius ``radius``, ``n_units`` units in all.

    Holds the index of every tile's block of ``J`` (module docstring), built once per device.
    """

    def __init__(self, grid_shape: tuple[int, int], radius: int, n_units: int) -> None:
        height, width = (int(d) for d in grid_shape)
        if height < 1 or width < 1 or height * width > n_units:
            raise ValueError(
                f"grid_shape={grid_shape!r}: need H, W >= 1 and H·W <= n_units={n_units}"
            )
        if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
            raise ValueError(f"radius={radius!r}: Chebyshev neighbourhood radius, an integer >= 0")
        self.grid_shape = (height, width)
        self.n_grid = height * width
        self.n_units = int(n_units)
        # Offsets of |dy| >= H or |dx| >= W never land on the grid.
        self.radius = (min(radius, height - 1), min(radius, width - 1))
        self.tile = (min(TILE, height), min(TILE, width))
        self.n_tiles = (math.ceil(height / self.tile[0]), math.ceil(width / self.tile[1]))
        self._index: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def window(self) -> tuple[int, int]:
        """Rows and columns of the grid window one tile reads, ``(b + 2r_h, t + 2r_w)``."""
        return self.tile[0] + 2 * self.radius[0], self.tile[1] + 2 * self.radius[1]

    def block_index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(flat, valid)``, both ``(tiles, b·t, C)``: ``flat`` the index in the flattened
        ``J`` of the coupling from window pixel ``c`` to tile pixel ``q`` (0 where there is
        none), ``valid`` where both are on the grid, distinct and within the radius."""
        if device not in self._index:
            (height, width), (rh, rw) = self.grid_shape, self.radius
            (b, t), (wh, ww) = self.tile, self.window
            tile_row = torch.arange(self.n_tiles[0])[:, None, None, None, None, None]
            tile_col = torch.arange(self.n_tiles[1])[None, :, None, None, None, None]
            out_row = tile_row * b + torch.arange(b)[:, None, None, None]
            out_col = tile_col * t + torch.arange(t)[:, None, None]
            in_row = tile_row * b - rh + torch.arange(wh)[:, None]
            in_col = tile_col * t - rw + torch.arange(ww)
            valid = (
                (out_row < height)
                & (out_col < width)
                & (in_row >= 0)
                & (in_row < height)
                & (in_col >= 0)
                & (in_col < width)
                & ((in_row - out_row).abs() <= rh)
                & ((in_col - out_col).abs() <= rw)
                & ((in_row != out_row) | (in_col != out_col))
            )
            flat = (out_row * width + out_col) * self.n_units + in_row * width + in_col
            shape = (self.n_tiles[0] * self.n_tiles[1], b * t, wh * ww)
            flat = torch.where(valid, flat, 0).reshape(shape)
            self._index[device] = (flat.to(device), valid.reshape(shape).to(device))
        return self._index[device]

    def __repr__(self) -> str:
        return (
            f"LocalStencil(grid_shape={self.grid_shape}, radius={self.radius}, "
            f"tile={self.tile}, n_units={self.n_units})"
        )


class LocalProduct:
    """``signal @ J^T`` for a ``J`` supported on the ``"local"`` mask of ``stencil``
    (module docstring); grid pairs of ``J`` off the mask are ignored."""

    def __init__(self, couplings: torch.Tensor, stencil: LocalStencil) -> None:
        n_units, n_grid = stencil.n_units, stencil.n_grid
        if couplings.shape != (n_units, n_units):
            raise ValueError(
                f"couplings shape {tuple(couplings.shape)}: expected ({n_units}, {n_units}) "
                f"for {stencil}"
            )
        flat, valid = stencil.block_index(couplings.device)
        zero = torch.zeros((), dtype=couplings.dtype, device=couplings.device)
        self.blocks = torch.where(valid, couplings.reshape(-1)[flat], zero)
        self.stencil = stencil
        self.grid_from_hidden = couplings[:n_grid, n_grid:]
        self.hidden_from_all = couplings[n_grid:, :]

    def __call__(self, signal: torch.Tensor) -> torch.Tensor:
        stencil = self.stencil
        (height, width), (rh, rw) = stencil.grid_shape, stencil.radius
        (b, t), (wh, ww), (nb, nt) = stencil.tile, stencil.window, stencil.n_tiles
        n, n_grid = signal.shape[0], stencil.n_grid
        grid = signal[:, :n_grid].reshape(n, height, width)
        padded = F.pad(grid, (rw, rw + nt * t - width, rh, rh + nb * b - height))
        windows = padded.unfold(1, wh, b).unfold(2, ww, t).reshape(n, nb * nt, wh * ww)
        tiles = torch.einsum("nkc,kqc->nkq", windows, self.blocks)
        out = tiles.reshape(n, nb, nt, b, t).transpose(2, 3).reshape(n, nb * b, nt * t)
        out = out[:, :height, :width].reshape(n, n_grid)
        if n_grid == stencil.n_units:
            return out
        out = out + signal[:, n_grid:] @ self.grid_from_hidden.T
        return torch.cat((out, signal @ self.hidden_from_all.T), dim=1)


def choose_product(
    kind: str, stencil: LocalStencil | None, n_units: int, device_type: str = "cpu"
) -> str:
    """``"dense"`` or ``"local"`` for the ``kind`` asked (``"auto"``: local for a local mask
    of at least :data:`LOCAL_MIN_UNITS` units on the CPU, where it was measured faster;
    dense elsewhere, e.g. on a GPU, where one large matmul is the better bet)."""
    if kind not in PRODUCTS:
        raise ValueError(
            f"coupling_product={kind!r}: expected one of {', '.join(map(repr, PRODUCTS))}"
        )
    if kind == "local" and stencil is None:
        raise ValueError("coupling_product='local' needs mask='local'; use 'auto' or 'dense'")
    if kind == "auto":
        large = stencil is not None and n_units >= LOCAL_MIN_UNITS
        return "local" if large and device_type == "cpu" else "dense"
    return kind
