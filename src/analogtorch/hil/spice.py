"""SPICE backend: crossbar tiles simulated by ngspice, the circuit-level reference.

A netlist holds one array, the circuit of :mod:`analogtorch.hardware.nodal` (all SI units):

* **DACs**: row ``i`` is driven by an ideal voltage source ``V_i`` (volts) at node ``in<i>``.
* **Word lines**: a resistor ``r`` (ohms) from ``in<i>`` to the row node of column 0 and
  between adjacent row nodes ``u<i>_<j>``.
* **Devices**: a resistor ``1/g_ij`` (ohms) from ``u<i>_<j>`` to the column node
  ``v<i>_<j>``; a device with ``g_ij = 0`` is left out (an open circuit).
* **Bit lines**: a resistor ``r`` between adjacent column nodes and from the node of the
  last row to the amplifier input ``a<j>``. For ``r = 0`` the wire segments vanish: the row
  nodes are merged into ``in<i>`` and the column nodes into ``a<j>``.
* **Read-out**: an ideal transimpedance amplifier. A 0 V source from ``a<j>`` to ground holds
  the bit line at exactly 0 V (virtual ground) and senses the current ``I_j`` into the
  amplifier; a current-controlled voltage source with transresistance ``-R_f`` (ohms) gives
  ``V_out,j = -R_f I_j`` at ``o<j>``. ngspice reports ``V_out`` and ``I_j = -V_out,j / R_f``.
  (A high-gain op-amp model is not used: its virtual ground would be off by
  ``V_out / gain``.)
* **Differential weights**: ``G+`` and ``G-`` are two separate arrays with their own word
  and bit lines (as in :mod:`analogtorch.hardware.circuit`) driven by the same DAC voltages.
  Each is its own netlist and ngspice run (the two run concurrently); ``I = I+ - I-``.

ngspice silently raises any resistance below 1 mΩ to 1 mΩ, so a netlist whose smallest
resistance is below 1 Ω is impedance-scaled by ``k = 1 Ω / R_min``: every resistance and
``R_f`` times ``k``. That leaves every node voltage, ``V_out`` included, unchanged.

One ngspice run solves a batch of input vectors: the DACs are behavioural sources whose
voltage is a table of a vector index, one ``dc`` sweep of the index solves all vectors with
one ordering of the sparse matrix, and ``wrdata`` writes ``V_out`` at 17 significant digits.
The circuit is linear, so for any batch ``I = V @ G_eff`` with ``G_eff`` (rows, cols),
siemens, the currents for 1 V on one row and 0 V on the others (:func:`characterize_tile`).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from ..hardware.mapping import normalized_weights, split_differential, weight_scale
from ..hardware.nodal import check_wire_resistance
from ..hardware.profile import HardwareProfile
from ..hardware.tiling import RowTiling
from .backend import check_inputs

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

DEFAULT_FEEDBACK_OHM = 10e3
# One run of the 64 unit inputs of a 64 x 64 array takes 30-50 s (ngspice-39).
DEFAULT_TIMEOUT_S = 600.0
MAX_TILE_SIZE = 64
_OUTPUT_FILE = "tia_out.txt"
_NETLIST_FILE = "tile.cir"
_SCALED_MIN_RESISTANCE_OHM = 1.0  # far above ngspice's 1 mOhm floor
_TAIL_CHARS = 2000

SpiceMode = Literal["superposition", "direct"]
Array = NDArray[np.float64]


def find_ngspice() -> str:
    """Path of the ``ngspice`` executable; ``FileNotFoundError`` saying how to get it."""
    path = shutil.which("ngspice")
    if path is None:
        raise FileNotFoundError(
            "ngspice: executable not found on PATH; the SPICE backend needs ngspice "
            "(Debian/Ubuntu: `apt-get install ngspice`)"
        )
    return path


def _fmt(value: float) -> str:
    """A float as SPICE text that reads back to the same double."""
    return f"{value:.17g}"


def _positive(value: float, name: str, unit: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a finite value > 0 {unit}")
    return number


@dataclass(frozen=True, eq=False)
class SpiceTile:
    """One crossbar array as ngspice sees it (see the module docstring for the circuit).

    Attributes:
        g: device conductances (rows, cols), siemens, >= 0.
        wire_resistance_ohm: resistance of one wire segment, ohms (0: ideal wires).
        feedback_ohm: transresistance ``R_f`` of the read-out amplifiers, ohms.
    """

    g: Array
    wire_resistance_ohm: float
    feedback_ohm: float = DEFAULT_FEEDBACK_OHM

    @classmethod
    def from_conductances(
        cls, g: ArrayLike, wire_resistance_ohm: float, feedback_ohm: float = DEFAULT_FEEDBACK_OHM
    ) -> SpiceTile:
        """Validated tile holding a float64 copy of ``g``."""
        g_arr = np.array(g, dtype=np.float64)
        if g_arr.ndim != 2 or 0 in g_arr.shape:
            raise ValueError(
                f"g: shape {g_arr.shape} is not allowed; expected a non-empty conductance "
                "matrix (rows, cols) in siemens"
            )
        if not np.all(np.isfinite(g_arr)) or np.any(g_arr < 0):
            raise ValueError("g: conductances must be finite and >= 0 siemens")
        r = check_wire_resistance(wire_resistance_ohm)
        return cls(g_arr, r, _positive(feedback_ohm, "feedback_ohm", "ohm"))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols): word lines (inputs) and bit lines (outputs)."""
        rows, cols = self.g.shape
        return rows, cols

    @cached_property
    def key(self) -> str:
        """SHA-256 of the conductances, the wire resistance and ``R_f`` (the cache key)."""
        digest = hashlib.sha256(b"analogtorch-spice-tile-v1")
        digest.update(repr((self.shape, self.wire_resistance_ohm, self.feedback_ohm)).encode())
        digest.update(np.ascontiguousarray(self.g).tobytes())
        return digest.hexdigest()

    @cached_property
    def impedance_scale(self) -> float:
        """``k >= 1``: the netlist's impedances are ``k`` times the physical ones."""
        g_peak = float(self.g.max())
        r_min = min(
            self.wire_resistance_ohm if self.wire_resistance_ohm > 0 else math.inf,
            1.0 / g_peak if g_peak > 0 else math.inf,
        )
        return 1.0 if r_min >= _SCALED_MIN_RESISTANCE_OHM else _SCALED_MIN_RESISTANCE_OHM / r_min

    @property
    def output_vectors(self) -> list[str]:
        """ngspice vectors of the amplifier outputs ``V_out`` (volts), one per column."""
        return [f"v(o{j})" for j in range(self.shape[1])]

    @cached_property
    def circuit(self) -> str:
        """Element lines of the array and its amplifiers (all but the DACs), cached."""
        rows, cols = self.shape
        k = self.impedance_scale
        r_wire = _fmt(k * self.wire_resistance_ohm)
        lines = [
            f"* array {rows} x {cols}, r = {_fmt(self.wire_resistance_ohm)} ohm, "
            f"R_f = {_fmt(self.feedback_ohm)} ohm, impedance scale k = {_fmt(k)}"
        ]
        if self.wire_resistance_ohm > 0:
            row_node = [[f"u{i}_{j}" for j in range(cols)] for i in range(rows)]
            col_node = [[f"v{i}_{j}" for j in range(cols)] for i in range(rows)]
            for i in range(rows):
                left = [f"in{i}", *row_node[i][:-1]]
                lines += [f"rw{i}_{j} {left[j]} {row_node[i][j]} {r_wire}" for j in range(cols)]
            for j in range(cols):
                below = [col_node[i + 1][j] for i in range(rows - 1)] + [f"a{j}"]
                lines += [f"rb{i}_{j} {col_node[i][j]} {below[i]} {r_wire}" for i in range(rows)]
        else:
            row_node = [[f"in{i}"] * cols for i in range(rows)]
            col_node = [[f"a{j}" for j in range(cols)] for _ in range(rows)]
        for i, j in zip(*np.nonzero(self.g), strict=True):
            lines.append(f"rd{i}_{j} {row_node[i][j]} {col_node[i][j]} {_fmt(k / self.g[i, j])}")
        for j in range(cols):
            lines.append(f"vsense{j} a{j} 0 dc 0")
            lines.append(f"htia{j} o{j} 0 vsense{j} {_fmt(-k * self.feedback_ohm)}")
        return "\n".join(lines)

    def netlist(self, v_in: ArrayLike) -> str:
        """Complete netlist solving the input voltages ``v_in`` (rows,) or (batch, rows), volts.

        DAC ``i`` is ``V_i = pwl(v(vector), 0, v_0i, 1, v_1i, ...)``, a table of the node
        ``vector`` that a swept source sets to ``0 .. batch-1``. One ``dc`` sweep orders the
        sparse matrix once; an ``op`` per vector (changing the sources with ``alter``)
        reorders it every time, seconds per vector for a 64 x 64 array. ``wrdata`` writes
        ``tia_out.txt``: one line per vector, the index and then :attr:`output_vectors`.
        """
        v = self._voltages(v_in)
        batch = v.shape[0]
        table = np.vstack([v, v[-1:]])  # pwl needs two points: repeat the last vector
        dacs = [
            f"bin{i} in{i} 0 v = pwl(v(vector), "
            + ", ".join(f"{n}, {_fmt(volts)}" for n, volts in enumerate(table[:, i]))
            + ")"
            for i in range(v.shape[1])
        ]
        vectors = " ".join(self.output_vectors)
        control = [
            ".control",
            "set numdgt=17",
            "set wr_singlescale",
            f"save {vectors}",
            f"dc vvector 0 {batch - 1} 1",
            f"wrdata {_OUTPUT_FILE} {vectors}",
            "quit",
            ".endc",
            ".end",
        ]
        lines = ["analogtorch crossbar tile", "vvector vector 0 dc 0", *dacs, self.circuit]
        return "\n".join(lines + control) + "\n"

    def simulate(
        self,
        v_in: ArrayLike,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workdir: str | Path | None = None,
    ) -> Array:
        """Column currents ``I_j`` (batch, cols), amperes, from one ngspice run.

        A 1-D ``v_in`` (rows,) gives currents of shape (cols,).
        """
        v = self._voltages(v_in)
        v_out = run_ngspice(self.netlist(v), (v.shape[0], self.shape[1]), timeout_s, workdir)
        currents = -v_out / self.feedback_ohm
        return currents[0] if np.ndim(v_in) == 1 else currents

    def _voltages(self, v_in: ArrayLike) -> Array:
        v = np.asarray(v_in, dtype=np.float64)
        rows = self.shape[0]
        if v.ndim not in (1, 2) or v.shape[-1] != rows or v.size == 0:
            raise ValueError(
                f"v_in: shape {v.shape} is not allowed; expected ({rows},) or "
                f"(batch >= 1, {rows}) input voltages in volts, one per row"
            )
        if not np.all(np.isfinite(v)):
            raise ValueError("v_in: contains NaN or inf; input voltages must be finite volts")
        return np.atleast_2d(v)


def run_ngspice(
    netlist: str,
    expected_shape: tuple[int, int],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workdir: str | Path | None = None,
) -> Array:
    """Run ``ngspice -b`` on ``netlist`` in a temporary directory; the ``wrdata`` values.

    Returns the written vectors, shape ``expected_shape`` (points, vectors), the scale
    column dropped. Raises ``RuntimeError`` with the end of ngspice's messages when it fails,
    reports an error, runs past ``timeout_s`` seconds or writes other than expected.
    """
    exe = find_ngspice()
    with tempfile.TemporaryDirectory(prefix="analogtorch-spice-", dir=workdir) as tmp:
        Path(tmp, _NETLIST_FILE).write_text(netlist)
        try:
            proc = subprocess.run(
                [exe, "-b", "-n", _NETLIST_FILE],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"ngspice did not finish within timeout_s={timeout_s} s; use smaller tiles, "
                "a smaller batch or a larger timeout_s"
            ) from None
        # ngspice exits 0 after errors inside a .control block, so its messages are read too.
        errors = [ln for ln in proc.stderr.splitlines() if ln.lstrip().lower().startswith("error")]
        output = Path(tmp, _OUTPUT_FILE)
        if proc.returncode != 0 or errors or not output.exists():
            tail = (proc.stderr.strip() or proc.stdout.strip())[-_TAIL_CHARS:]
            raise RuntimeError(
                f"ngspice failed (exit status {proc.returncode}); end of its messages:\n{tail}"
            )
        data = np.loadtxt(output, dtype=np.float64, ndmin=2)
    points, n_vectors = expected_shape
    if data.shape != (points, n_vectors + 1):
        raise RuntimeError(
            f"ngspice wrote values of shape {data.shape}; expected {points} lines of "
            f"{n_vectors + 1} columns (index + outputs)"
        )
    return data[:, 1:]


def _simulate_all(
    jobs: Sequence[tuple[SpiceTile, Array]],
    timeout_s: float,
    workdir: str | Path | None,
    workers: int,
) -> list[Array]:
    """Currents of several (tile, voltages) runs; up to ``workers`` ngspice processes at once."""

    def run(job: tuple[SpiceTile, Array]) -> Array:
        return job[0].simulate(job[1], timeout_s=timeout_s, workdir=workdir)

    if workers <= 1 or len(jobs) <= 1:
        return [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(run, jobs))


def build_netlist(
    g: ArrayLike,
    v_in: ArrayLike,
    wire_resistance_ohm: float,
    *,
    feedback_ohm: float = DEFAULT_FEEDBACK_OHM,
) -> str:
    """ngspice netlist of one array ``g`` (rows, cols), siemens, driven by ``v_in``, volts.

    ``v_in`` is (rows,) or (batch, rows); ``wire_resistance_ohm`` is one wire segment, ohms,
    >= 0; ``feedback_ohm`` the amplifiers' transresistance, ohms. A differential tile is two
    such netlists, one for ``G+`` and one for ``G-``.
    """
    return SpiceTile.from_conductances(g, wire_resistance_ohm, feedback_ohm).netlist(v_in)


def simulate_tile(
    g: ArrayLike,
    v_in: ArrayLike,
    wire_resistance_ohm: float,
    *,
    g_neg: ArrayLike | None = None,
    feedback_ohm: float = DEFAULT_FEEDBACK_OHM,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workdir: str | Path | None = None,
) -> Array:
    """Output currents of one tile from ngspice, amperes: (cols,) or (batch, cols).

    The SPICE counterpart of :func:`analogtorch.hardware.nodal.solve_crossbar` (same first
    three arguments). With ``g_neg`` (rows, cols), ``g`` is ``G+`` and the currents are
    ``I+ - I-``, from two concurrent runs.
    """
    tiles = [SpiceTile.from_conductances(g, wire_resistance_ohm, feedback_ohm)]
    if g_neg is not None:
        tiles.append(SpiceTile.from_conductances(g_neg, wire_resistance_ohm, feedback_ohm))
        if tiles[1].shape != tiles[0].shape:
            raise ValueError(
                f"g_neg: shape {tiles[1].shape} differs from g's {tiles[0].shape}; the arrays "
                "of a differential pair must have the same shape"
            )
    v = tiles[0]._voltages(v_in)
    currents = _simulate_all([(tile, v) for tile in tiles], timeout_s, workdir, len(tiles))
    total = currents[0] if g_neg is None else currents[0] - currents[1]
    return total[0] if np.ndim(v_in) == 1 else total


def characterize_tile(
    g: ArrayLike,
    wire_resistance_ohm: float,
    *,
    g_neg: ArrayLike | None = None,
    feedback_ohm: float = DEFAULT_FEEDBACK_OHM,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workdir: str | Path | None = None,
) -> Array:
    """``G_eff`` (rows, cols), siemens, with ``I = V @ G_eff``: one run of the unit inputs.

    Row ``k`` is the currents for 1 V on row ``k`` and 0 V elsewhere (``G+_eff - G-_eff``
    with ``g_neg``).
    """
    return simulate_tile(
        g,
        np.eye(np.shape(g)[0]),
        wire_resistance_ohm,
        g_neg=g_neg,
        feedback_ohm=feedback_ohm,
        timeout_s=timeout_s,
        workdir=workdir,
    )


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
