"""SPICE backend: crossbar tiles simulated by ngspice, the circuit-level reference.

:class:`SpiceBackend` maps a layer's weights onto tiles of ``G+``/``G-`` arrays and runs them
through ngspice; the circuit, its netlist and the ngspice runs are in :mod:`.spice_netlist`,
the devices' I-V law in :mod:`.spice_device` (both re-exported here). The converters around
the arrays are the hardware model's own, applied in Python to the DAC codes and to the
simulated currents (:func:`dac_levels`, :func:`adc_read_out`).
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

from ..hardware.adc import adc_sum_of_tiles
from ..hardware.circuit import apply_transfer_curve
from ..hardware.mapping import normalized_weights, split_differential, weight_scale
from ..hardware.profile import HardwareProfile
from ..hardware.quantize import integer_codes
from ..hardware.tiling import RowTiling
from .backend import check_inputs
from .spice_device import DeviceIV
from .spice_netlist import (
    DEFAULT_FEEDBACK_OHM,
    DEFAULT_TIMEOUT_S,
    MAX_TILE_SIZE,
    SOLVER_OPTIONS,
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
    "SOLVER_OPTIONS",
    "DeviceIV",
    "SpiceBackend",
    "SpiceTile",
    "adc_read_out",
    "build_netlist",
    "characterize_tile",
    "dac_levels",
    "find_ngspice",
    "run_ngspice",
    "simulate_tile",
]

SpiceMode = Literal["superposition", "direct"]


@dataclass
class _PlacedTile:
    """A tile of a layer: input rows, output columns, arrays (G+, G-), ``G_eff`` (siemens),
    and the chip tile whose ADCs read its currents."""

    rows: slice
    cols: slice
    arrays: tuple[SpiceTile, SpiceTile]
    g_eff: Array | None  # G+_eff - G-_eff, superposition mode only
    adc_tile: int


@dataclass
class _ProgrammedLayer:
    scale: Array  # s per output row, layer units
    input_range: float
    in_features: int
    adc_tiles: int
    tiles: list[_PlacedTile]
    programmed_at: float = field(default_factory=time.monotonic)


def _tile_slices(lines: slice, max_size: int) -> list[slice]:
    """Balanced split of ``lines`` into chunks of at most ``max_size`` (as ``RowTiling``)."""
    start, stop = lines.start, lines.stop
    size = RowTiling.balanced(stop - start, max_size).rows_per_tile
    return [slice(first, min(first + size, stop)) for first in range(start, stop, size)]


def _nested_slices(n: int, chip_size: int, array_size: int) -> list[tuple[int, slice]]:
    """``n`` lines cut into the chip's balanced tiles of at most ``chip_size`` lines, each
    cut into simulated arrays of at most ``array_size``: (chip tile index, array lines)."""
    return [
        (index, lines)
        for index, chip_tile in enumerate(_tile_slices(slice(0, n), chip_size))
        for lines in _tile_slices(chip_tile, array_size)
    ]


def dac_levels(x: torch.Tensor, input_range: float, profile: HardwareProfile) -> torch.Tensor:
    """Normalised DAC output ``x_hat`` (the shape of ``x``, float64) of inputs ``x`` in layer
    units: the hardware model's DAC (``hardware/surrogate.py``).

    ``x_hat = clamp(round(x h / r), -h, h - 1) / h`` with ``h = 2**(dac_bits - 1)`` and ``r``
    the full scale ``input_range``; ``x_hat = x / r`` without a DAC (``dac_bits`` None). The
    row is driven at ``V = v_read x_hat`` volts.
    """
    x64 = x.detach().to("cpu", torch.float64)
    if profile.dac_bits is None:
        return x64 / input_range
    half_in = float(1 << (profile.dac_bits - 1))
    return integer_codes(x64, half_in / input_range, profile.dac_bits) / half_in


def adc_read_out(currents: Array, profile: HardwareProfile) -> Array:
    """Digital read-out (batch, out) of per-tile column currents (tiles, batch, out), amperes,
    in units of ``g_max v_read``: the hardware model's ADC (``hardware/adc.py``) on each
    chip tile's currents.

    With ``u_t = I_t / (g_max v_read)``, ``h = 2**(adc_bits - 1)`` and ``c = h / r_out``
    (``r_out`` = ``adc_range``): ``y = sum_t clamp(round(c u_t), -h, h - 1) / c``; without
    an ADC (``adc_bits`` None) ``y = sum_t u_t``.
    """
    units = currents / (profile.g_max_siemens * profile.v_read_volts)
    if profile.adc_bits is None:
        return units.sum(axis=0)
    codes_per_unit = float(1 << (profile.adc_bits - 1)) / profile.adc_range
    codes = adc_sum_of_tiles(torch.from_numpy(units * codes_per_unit), profile.adc_bits)
    return codes.numpy() / codes_per_unit


class SpiceBackend:
    """HIL backend whose hardware is crossbar tiles simulated by ngspice.

    ``program`` maps ``W`` (out, in) with the project mapping (``s = max|W|`` per output row,
    ``G± = g_max max(±W/s, 0)``) and puts inputs on word lines and outputs on bit lines. The
    layer is cut into the chip's tiles (the profile's ``tile_rows`` x ``tile_cols``, balanced
    as in the hardware model), and each of those into simulated arrays of at most
    ``tile_rows`` x ``tile_cols`` of this backend, each a ``G+`` and a ``G-`` array with the
    profile's device I-V (:class:`DeviceIV`: a resistor, or a sinh/tanh B-source).

    ``mvm`` is the hardware model's read chain (``hardware/surrogate.py``) on the circuit:

    1. DAC: ``x_hat = Q_dac(x) / r`` (:func:`dac_levels`; ``r`` the layer's ``input_range``),
       rows driven at ``V = v_read x_hat`` volts.
    2. Arrays: column currents ``I = I+ - I-`` (amperes) from ngspice; for ideal wires
       ``I_j = g_max v_read sum_i w_hat_ij f(x_hat_i)`` with ``w_hat = (G+ - G-) / g_max``.
    3. ADC: the currents of the arrays of one chip tile are added, digitised per chip tile
       and the codes summed (:func:`adc_read_out`, in units of ``g_max v_read``).
    4. ``y = s r sum_t ADC(I_t / (g_max v_read))``: exactly ``x Wᵀ`` for ideal wires, linear
       devices and ideal converters.

    Modes: ``"superposition"`` measures each array's ``G_eff`` with one ngspice run at
    programming (full-scale ``v_read`` on one row at a time, cached by the array's hash) and
    computes ``I = v_read f(x_hat) @ G_eff``, exact for linear devices and, with
    nonlinear devices, for ideal wires (each device then sees its DAC voltage); nonlinear
    devices with wire resistance need ``"direct"``, which simulates every input vector (one
    run per array per call; slow). An all-zero array (e.g. ``G-`` of a non-negative block)
    carries no current and is not run. Of the profile, the mapping (``g_max_siemens``,
    ``weight_range``, ``weight_bits``), ``v_read_volts``, ``wire_resistance_ohm``,
    ``transfer_curve`` and ``transfer_nonlinearity``, the converters (``dac_bits``,
    ``adc_bits``, ``adc_range``) and the tiling are used: no noise, drift, mismatch or
    crosstalk. The ADC full scale is the profile's ``adc_range`` (a layer's learned
    ``output_range`` is not passed through the :class:`~.backend.Backend` interface).

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
        self.device = DeviceIV.from_profile(profile)
        if mode == "superposition" and not self.device.is_linear and profile.wire_resistance_ohm:
            raise ValueError(
                f"mode='superposition' with transfer_curve={profile.transfer_curve!r} and "
                f"wire_resistance_ohm={profile.wire_resistance_ohm}: nonlinear devices behind "
                "resistive wires do not superpose; use mode='direct' or a linear profile"
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
        out_features, in_features = w.shape
        row_blocks = _nested_slices(in_features, self.profile.tile_rows, self.tile_rows)
        col_blocks = _nested_slices(out_features, self.profile.tile_cols, self.tile_cols)
        blocks = [(t, rows, cols) for t, rows in row_blocks for _, cols in col_blocks]
        arrays = [
            (self._array(g_pos[rows, cols]), self._array(g_neg[rows, cols]))
            for _, rows, cols in blocks
        ]
        g_eff: dict[str, Array | None] = {}
        for pair in arrays:
            for array in pair:
                g_eff[array.key] = self._cache.get(array.key, (array, None))[1]
        if self.mode == "superposition":
            # Full-scale drive on one row at a time: f(1) = 1, so I / v_read is G_eff.
            v_read = self.profile.v_read_volts
            todo = {a.key: a for pair in arrays for a in pair if g_eff[a.key] is None}
            measured = self._currents([(a, v_read * np.eye(a.shape[0])) for a in todo.values()])
            for key, currents in zip(todo, measured, strict=True):
                g_eff[key] = currents / v_read
        for pair in arrays:
            for array in pair:
                self._remember(array, g_eff[array.key])
        tiles = []
        for (adc_tile, rows, cols), (pos, neg) in zip(blocks, arrays, strict=True):
            g_pos_eff, g_neg_eff = g_eff[pos.key], g_eff[neg.key]
            diff = None if g_pos_eff is None or g_neg_eff is None else g_pos_eff - g_neg_eff
            tiles.append(_PlacedTile(rows, cols, (pos, neg), diff, adc_tile))
        adc_tiles = row_blocks[-1][0] + 1
        self._layers[layer] = _ProgrammedLayer(
            scale[:, 0].numpy(), input_range, in_features, adc_tiles, tiles
        )
        return (scale * (g_plus - g_minus)).to(dtype=weight.dtype, device=weight.device)

    def mvm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """``y ≈ x Wᵀ`` (batch, out) through the simulated tiles."""
        state = self._layer(layer)
        check_inputs(layer, x, state.input_range, state.in_features)
        v_read = self.profile.v_read_volts
        x_hat = dac_levels(x, state.input_range, self.profile)
        batch = x_hat.shape[0]
        # Column currents of each chip tile, amperes: (adc_tiles, batch, out).
        currents = np.zeros((state.adc_tiles, batch, state.scale.shape[0]))
        if batch > 0 and self.mode == "superposition":
            drive = v_read * apply_transfer_curve(x_hat, self.profile).numpy()
            for tile in state.tiles:
                currents[tile.adc_tile, :, tile.cols] += drive[:, tile.rows] @ tile.g_eff
        elif batch > 0:
            v = v_read * x_hat.numpy()
            jobs = [(a, v[:, t.rows]) for t in state.tiles for a in t.arrays]
            pair_currents = iter(self._currents(jobs))
            for tile in state.tiles:
                currents[tile.adc_tile, :, tile.cols] += next(pair_currents) - next(pair_currents)
        self._calls += batch
        y = adc_read_out(currents, self.profile) * (state.scale * state.input_range)
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return torch.from_numpy(y).to(dtype=dtype, device=x.device)

    def time_since_programming(self, layer: str) -> float:
        """Seconds since ``layer`` was last programmed (monotonic clock)."""
        return time.monotonic() - self._layer(layer).programmed_at

    def __repr__(self) -> str:
        return (
            f"SpiceBackend(mode={self.mode!r}, tile={self.tile_rows}x{self.tile_cols}, "
            f"wire_resistance_ohm={self.profile.wire_resistance_ohm}, device={self.device})"
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
        array = SpiceTile.from_conductances(
            g, self.profile.wire_resistance_ohm, self.feedback_ohm, self.device
        )
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
