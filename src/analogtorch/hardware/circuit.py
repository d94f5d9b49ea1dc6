"""Crossbar circuit effects on the stored weights and on the input voltages.

* **Crosstalk** ``C(x)``: capacitive/leakage coupling between adjacent word lines of a
  tile makes device (j, i) see ``V_i + k (V_{i-1} + V_{i+1})``; because the array is linear
  this equals an effective weight ``W'_{j,i} = W_{j,i} + k (W_{j,i-1} + W_{j,i+1})`` within
  each tile, so ``C(x) = Q(W) K x`` costs O(out * in) once per forward, not per sample.
* **IR drop**: each tile's differential arrays (``G+`` and ``G-``, separate wires) are
  replaced by their effective conductances from :mod:`.ir_drop` (Pade form
  ``g / (1 + r (A + B))``, exact for one device and never outside [0, g]); a tile is
  ``rows_per_tile`` word lines by ``tile_cols`` bit lines.
* **Transfer curve**: a device current ``I = G f(V)`` with a normalised nonlinearity
  ``f(v) = sinh(a v) / sinh(a)`` (selector / ReRAM I-V) or ``tanh(a v) / tanh(a)``
  (saturating driver); ``f(+-1) = +-1`` so full-scale inputs keep full-scale currents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ir_drop import ir_drop_effective_conductance
from .mapping import split_differential
from .profile import HardwareProfile
from .tiling import RowTiling


def transfer_curve(x_hat: torch.Tensor, curve: str, a: float) -> torch.Tensor:
    """``f(x_hat)``: ``sinh(a x)/sinh(a)``, ``tanh(a x)/tanh(a)`` or ``x`` (``linear``)."""
    if curve == "sinh":
        return torch.sinh(a * x_hat) / math.sinh(a)
    if curve == "tanh":
        return torch.tanh(a * x_hat) / math.tanh(a)
    if curve == "linear":
        return x_hat
    raise ValueError(f"transfer curve {curve!r}: expected 'sinh', 'tanh' or 'linear'")


def apply_transfer_curve(x_hat: torch.Tensor, profile: HardwareProfile) -> torch.Tensor:
    """Normalised device I-V nonlinearity ``f(x_hat)`` (identity for a linear curve)."""
    return transfer_curve(x_hat, profile.transfer_curve, profile.transfer_nonlinearity)


def apply_crosstalk(w_tiled: torch.Tensor, coupling: float) -> torch.Tensor:
    """Adjacent-word-line coupling on tiled weights (out, tiles, rows) -> same shape."""
    if coupling == 0.0:
        return w_tiled
    neighbours = F.pad(w_tiled[..., 1:], (0, 1)) + F.pad(w_tiled[..., :-1], (1, 0))
    return w_tiled + coupling * neighbours


def _ir_drop_tiles(g_tiled: torch.Tensor, tile_cols: int, profile: HardwareProfile) -> torch.Tensor:
    """IR drop of normalised conductances laid out (out, row_tiles, rows)."""
    n_out, n_row_tiles, rows = g_tiled.shape
    n_col_tiles = math.ceil(n_out / tile_cols)
    cols = math.ceil(n_out / n_col_tiles)
    g = F.pad(g_tiled, (0, 0, 0, 0, 0, n_col_tiles * cols - n_out))
    # (col_tiles * cols, row_tiles, rows) -> (row_tiles, col_tiles, rows, cols)
    g = g.reshape(n_col_tiles, cols, n_row_tiles, rows).permute(2, 0, 3, 1)
    g_eff = ir_drop_effective_conductance(
        g * profile.g_max_siemens, profile.wire_resistance_ohm, approximation="pade"
    )
    g_eff = g_eff / profile.g_max_siemens
    g_eff = g_eff.permute(1, 3, 0, 2).reshape(n_col_tiles * cols, n_row_tiles, rows)
    return g_eff[:n_out]


def effective_weights(
    g_plus: torch.Tensor, g_minus: torch.Tensor, tiling: RowTiling, profile: HardwareProfile
) -> torch.Tensor:
    """Effective normalised weights (out, n_rows) of a differential pair after the circuit.

    Applies crosstalk and IR drop tile by tile; returns ``G+_eff - G-_eff``.
    """
    if profile.crosstalk == 0.0 and profile.wire_resistance_ohm == 0.0:
        return g_plus - g_minus
    pair = []
    for g in (g_plus, g_minus):
        g_tiled = apply_crosstalk(tiling.pad(g), profile.crosstalk)
        if profile.wire_resistance_ohm > 0.0:
            g_tiled = _ir_drop_tiles(g_tiled, profile.tile_cols, profile)
        pair.append(g_tiled)
    return tiling.unpad(pair[0] - pair[1])


def circuit_weights(
    w_hat: torch.Tensor, tiling: RowTiling, profile: HardwareProfile
) -> torch.Tensor:
    """Effective weights of signed normalised weights ``w_hat`` (split into a pair first)."""
    if profile.crosstalk == 0.0 and profile.wire_resistance_ohm == 0.0:
        return w_hat
    return effective_weights(*split_differential(w_hat), tiling, profile)
