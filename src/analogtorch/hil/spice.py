"""SPICE backend: crossbar tiles simulated by ngspice, the circuit-level reference.

:class:`SpiceBackend` maps a layer's weights onto tiles of ``G+``/``G-`` arrays and runs them
through ngspice; the circuit, its netlist and the ngspice runs are in :mod:`.spice_netlist`
(re-exported here).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..hardware.mapping import normalized_weights, split_differential, weight_scale
from ..hardware.profile import HardwareProfile
from ..hardware.tiling import RowTiling
from .backend import check_inputs
from .spice_netlist import (
    DEFAULT_FEEDBACK_OHM,
    DEFAULT_TIMEOUT_S,
    MAX_TILE_SIZE,
    Array,
    SpiceTile,
    _positive,
    _simulate_all,
    build_netlist,
    characterize_tile,
    find_ngspice,
    run_ngspice,
    simulate_tile,
)

__all__ = [
    "DEFAULT_FEEDBACK_OHM",
    "DEFAULT_TIMEOUT_S",
    "MAX_TILE_SIZE",
    "SpiceBackend",
    "SpiceTile",
    "build_netlist",
    "characterize_tile",
    "find_ngspice",
    "run_ngspice",
    "simulate_tile",
]

SpiceMode = Literal["superposition", "direct"]


@dataclass
class _PlacedTile:
    """A tile of a layer: input rows, output columns, arrays (G+, G-), ``G_eff`` (siemens)."""

    rows: slice
    cols: slice
    arrays: tuple[SpiceTile, SpiceTile]
    g_eff: Array | None  # G+_eff - G-_eff, superposition mode only


@dataclass
class _ProgrammedLayer:
    scale: Array  # s per output row, layer units
    input_range: float
    in_features: int
    tiles: list[_PlacedTile]
    programmed_at: float = field(default_factory=time.monotonic)


def _tile_slices(n: int, max_size: int) -> list[slice]:
    """Balanced split of ``n`` lines into chunks of at most ``max_size`` (as ``RowTiling``)."""
    size = RowTiling.balanced(n, max_size).rows_per_tile
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


class SpiceBackend:
    """HIL backend whose hardware is crossbar tiles simulated by ngspice.

    ``program`` maps ``W`` (out, in) with the project mapping (``s = max|W|`` per output row,
    ``G± = g_max max(±W/s, 0)``), puts inputs on word lines and outputs on bit lines, and
    cuts the layer into tiles of at most ``tile_rows`` inputs x ``tile_cols`` outputs, each a
    ``G+`` and a ``G-`` array. ``mvm`` drives ``V = v_read x / R`` (``R`` the layer's
    ``input_range``), adds the tiles' currents ``I = I+ - I-`` of each output digitally and
    returns ``y = I s R / (g_max v_read)``, exactly ``x Wᵀ`` for ideal wires since
    ``I_j = (v_read / R) g_max sum_i x_i W_ji / s_j``.

    Modes: ``"superposition"`` measures each array's ``G_eff`` with one ngspice run at
    programming (cached by the array's hash) and computes ``I = V @ G_eff``; ``"direct"``
    simulates every input vector (one run per array per call; slow, for validation). An
    all-zero array (e.g. ``G-`` of a non-negative block) carries no current and is not run.
    Of the profile, only ``g_max_siemens``, ``v_read_volts``, ``wire_resistance_ohm``,
    ``weight_range`` and ``weight_bits`` (the mapping) are used: no noise, drift or ADC.

    Args:
        profile: the hardware description.
        mode: ``"superposition"`` or ``"direct"``.
        tile_rows, tile_cols: largest tile, inputs x outputs; at most 64 unless ``allow_large``
            (ngspice-39 factors the sparse matrix twice per input vector, about 0.3 s each for
            a 64 x 64 array: characterising one takes 30-50 s, a 32 x 32 array about 1 s).
        feedback_ohm: transresistance of the read-out amplifiers, ohms.
        timeout_s: limit of one ngspice run, seconds.
        workdir: parent directory of the temporary run directories (None: system default).
        allow_large: permit tiles above 64 x 64.
        cache_size: arrays (netlist text and ``G_eff``) kept in the cache.
        workers: ngspice processes run at once (None: the number of CPUs).
    """

    name = "spice"

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        mode: SpiceMode = "superposition",
        tile_rows: int = MAX_TILE_SIZE,
        tile_cols: int = MAX_TILE_SIZE,
        feedback_ohm: float = DEFAULT_FEEDBACK_OHM,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workdir: str | Path | None = None,
        allow_large: bool = False,
        cache_size: int = 128,
        workers: int | None = None,
    ) -> None:
        if mode not in ("superposition", "direct"):
            raise ValueError(f"mode={mode!r} is not allowed; expected 'superposition' or 'direct'")
        for arg, value in (("tile_rows", tile_rows), ("tile_cols", tile_cols)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg}={value!r} is not allowed; expected an integer >= 1")
            if value > MAX_TILE_SIZE and not allow_large:
                raise ValueError(
                    f"{arg}={value} is above {MAX_TILE_SIZE}; ngspice time grows steeply with "
                    "the tile size: use a smaller tile or pass allow_large=True"
                )
        for arg, value in (("cache_size", cache_size), ("workers", workers)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{arg}={value!r} is not allowed; expected an integer")
        if cache_size < 0 or (workers is not None and workers < 1):
            raise ValueError(
                f"cache_size={cache_size}, workers={workers}: expected cache_size >= 0 and "
                "workers >= 1 (or None)"
            )
        find_ngspice()
        self.profile = profile
        self.mode: SpiceMode = mode
        self.tile_rows = tile_rows
        self.tile_cols = tile_cols
        self.feedback_ohm = _positive(feedback_ohm, "feedback_ohm", "ohm")
        self.timeout_s = _positive(timeout_s, "timeout_s", "seconds")
        self.workdir = workdir
        self.cache_size = cache_size
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.ngspice_runs = 0
        self._calls = 0
        self._layers: dict[str, _ProgrammedLayer] = {}
        self._cache: OrderedDict[str, tuple[SpiceTile, Array | None]] = OrderedDict()

    @property
    def calls(self) -> int:
        """Input vectors processed so far by :meth:`mvm`."""
        return self._calls

    def program(self, layer: str, weight: torch.Tensor, input_range: float) -> torch.Tensor:
        """Store ``weight`` (out, in) as conductances; return ``s (G+ - G-) / g_max``."""
        if weight.ndim != 2 or 0 in weight.shape:
            raise ValueError(
                f"layer {layer!r}: weight shape {tuple(weight.shape)} is not allowed; "
                "expected a non-empty (out, in) matrix"
            )
        w = weight.detach().to("cpu", torch.float64)
        if not torch.isfinite(w).all():
            raise ValueError(f"layer {layer!r}: weight contains NaN or inf")
        input_range = _positive(input_range, "input_range", "(layer input units)")
        scale = weight_scale(w, self.profile)
        g_plus, g_minus = split_differential(normalized_weights(w, scale, self.profile))
        g_max = self.profile.g_max_siemens
        # Crossbar layout: inputs on word lines (rows), outputs on bit lines (columns).
        g_pos, g_neg = (g_max * g_plus).T.numpy(), (g_max * g_minus).T.numpy()
        blocks = [
            (rows, cols)
            for rows in _tile_slices(w.shape[1], self.tile_rows)
            for cols in _tile_slices(w.shape[0], self.tile_cols)
        ]
        arrays = [
            (self._array(g_pos[rows, cols]), self._array(g_neg[rows, cols]))
            for rows, cols in blocks
        ]
        g_eff: dict[str, Array | None] = {}
        for pair in arrays:
            for array in pair:
                g_eff[array.key] = self._cache.get(array.key, (array, None))[1]
        if self.mode == "superposition":
            todo = {a.key: a for pair in arrays for a in pair if g_eff[a.key] is None}
            measured = self._currents([(a, np.eye(a.shape[0])) for a in todo.values()])
            g_eff.update(zip(todo, measured, strict=True))
        for pair in arrays:
            for array in pair:
                self._remember(array, g_eff[array.key])
        tiles = []
        for (rows, cols), (pos, neg) in zip(blocks, arrays, strict=True):
            g_pos_eff, g_neg_eff = g_eff[pos.key], g_eff[neg.key]
            diff = None if g_pos_eff is None or g_neg_eff is None else g_pos_eff - g_neg_eff
            tiles.append(_PlacedTile(rows, cols, (pos, neg), diff))
        self._layers[layer] = _ProgrammedLayer(scale[:, 0].numpy(), input_range, w.shape[1], tiles)
        return (scale * (g_plus - g_minus)).to(dtype=weight.dtype, device=weight.device)

    def mvm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """``y ≈ x Wᵀ`` (batch, out) through the simulated tiles."""
        state = self._layer(layer)
        check_inputs(layer, x, state.input_range, state.in_features)
        v_read = self.profile.v_read_volts
        v = v_read * x.detach().to("cpu", torch.float64).numpy() / state.input_range
        currents = np.zeros((v.shape[0], state.scale.shape[0]))
        if v.shape[0] > 0 and self.mode == "superposition":
            for tile in state.tiles:
                currents[:, tile.cols] += v[:, tile.rows] @ tile.g_eff
        elif v.shape[0] > 0:
            jobs = [(a, v[:, t.rows]) for t in state.tiles for a in t.arrays]
            pair_currents = iter(self._currents(jobs))
            for tile in state.tiles:
                currents[:, tile.cols] += next(pair_currents) - next(pair_currents)
        self._calls += v.shape[0]
        y = currents * (state.scale * state.input_range / (self.profile.g_max_siemens * v_read))
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return torch.from_numpy(y).to(dtype=dtype, device=x.device)

    def time_since_programming(self, layer: str) -> float:
        """Seconds since ``layer`` was last programmed (monotonic clock)."""
        return time.monotonic() - self._layer(layer).programmed_at

    def __repr__(self) -> str:
        return (
            f"SpiceBackend(mode={self.mode!r}, tile={self.tile_rows}x{self.tile_cols}, "
            f"wire_resistance_ohm={self.profile.wire_resistance_ohm})"
        )

    def _layer(self, layer: str) -> _ProgrammedLayer:
        try:
            return self._layers[layer]
        except KeyError:
            raise KeyError(
                f"layer {layer!r} was never programmed; call program({layer!r}, ...) first"
            ) from None

    def _array(self, g: Array) -> SpiceTile:
        """The array for conductances ``g``: the cached object (with its netlist) if any."""
        array = SpiceTile.from_conductances(g, self.profile.wire_resistance_ohm, self.feedback_ohm)
        cached = self._cache.get(array.key)
        return array if cached is None else cached[0]

    def _remember(self, array: SpiceTile, g_eff: Array | None) -> None:
        if self.cache_size == 0:
            return
        self._cache[array.key] = (array, g_eff)
        self._cache.move_to_end(array.key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _currents(self, jobs: Sequence[tuple[SpiceTile, Array]]) -> list[Array]:
        """Currents (batch, cols) of each (array, voltages); all-zero arrays are not run."""
        results = [np.zeros((v.shape[0], a.shape[1])) for a, v in jobs]
        live = [n for n, (array, _) in enumerate(jobs) if array.g.any()]
        self.ngspice_runs += len(live)
        runs = _simulate_all([jobs[n] for n in live], self.timeout_s, self.workdir, self.workers)
        for n, currents in zip(live, runs, strict=True):
            results[n] = currents
        return results
