"""ngspice netlists of crossbar tiles and their runs, the circuit of the SPICE backend.

A netlist holds one array, the circuit of :mod:`analogtorch.hardware.nodal` (all SI units):

* **DACs**: row ``i`` is driven by an ideal voltage source ``V_i`` (volts) at node ``in<i>``.
* **Word lines**: a resistor ``r`` (ohms) from ``in<i>`` to the row node of column 0 and
  between adjacent row nodes ``u<i>_<j>``.
* **Devices**: from ``u<i>_<j>`` to the column node ``v<i>_<j>``, a resistor ``1/g_ij``
  (ohms), or for a nonlinear device I-V a behavioural current source
  ``I = g_ij v_ref f(V / v_ref)`` (:class:`~.spice_device.DeviceIV`: the hardware model's
  sinh/tanh transfer curve); a device with ``g_ij = 0`` is left out (an open circuit).
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
``R_f`` times ``k`` and every device current source divided by ``k``. That leaves every node
voltage, ``V_out`` included, unchanged.

One ngspice run solves a batch of input vectors: the DACs are behavioural sources whose
voltage is a table of a vector index, one ``dc`` sweep of the index solves all vectors with
one ordering of the sparse matrix, and ``wrdata`` writes ``V_out`` at 17 significant digits.
With linear devices the circuit is linear, so for any batch ``I = V @ G_eff`` with
``G_eff`` (rows, cols), siemens, the currents for 1 V on one row and 0 V on the others
(:func:`characterize_tile`). With nonlinear devices and ideal wires every device sees its
DAC voltage, so ``I = v_ref f(V / v_ref) @ G``; with wire resistance the nonlinear circuit
is solved by Newton's method to the tolerances of :data:`SOLVER_OPTIONS` (ngspice's default
``reltol = 1e-3`` leaves a 4 x 3 sinh array behind 50 Ω wires 1e-4 off; these 1e-11).
ngspice keeps 11 significant digits of a number inside a behavioural expression (measured,
ngspice-39), so a nonlinear device's current is exact to about 1e-11 relative.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..hardware.nodal import check_wire_resistance
from .spice_device import DeviceIV, _fmt

__all__ = [
    "DEFAULT_FEEDBACK_OHM",
    "DEFAULT_TIMEOUT_S",
    "MAX_TILE_SIZE",
    "SOLVER_OPTIONS",
    "DeviceIV",
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
# Newton tolerances: relative, currents (amperes), node voltages (volts). A linear circuit
# is solved exactly in one step whatever they are.
SOLVER_OPTIONS = ".options reltol=1e-9 abstol=1e-18 vntol=1e-12"
_SCALED_MIN_RESISTANCE_OHM = 1.0  # far above ngspice's 1 mOhm floor
_TAIL_CHARS = 2000

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
        device: the devices' I-V law (default: resistors).
    """

    g: Array
    wire_resistance_ohm: float
    feedback_ohm: float = DEFAULT_FEEDBACK_OHM
    device: DeviceIV = field(default_factory=DeviceIV)

    @classmethod
    def from_conductances(
        cls,
        g: ArrayLike,
        wire_resistance_ohm: float,
        feedback_ohm: float = DEFAULT_FEEDBACK_OHM,
        device: DeviceIV | None = None,
    ) -> SpiceTile:
        """Validated tile holding a float64 copy of ``g`` (``device`` None: resistors)."""
        g_arr = np.array(g, dtype=np.float64)
        if g_arr.ndim != 2 or 0 in g_arr.shape:
            raise ValueError(
                f"g: shape {g_arr.shape} is not allowed; expected a non-empty conductance "
                "matrix (rows, cols) in siemens"
            )
        if not np.all(np.isfinite(g_arr)) or np.any(g_arr < 0):
            raise ValueError("g: conductances must be finite and >= 0 siemens")
        r = check_wire_resistance(wire_resistance_ohm)
        feedback = _positive(feedback_ohm, "feedback_ohm", "ohm")
        return cls(g_arr, r, feedback, DeviceIV() if device is None else device)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols): word lines (inputs) and bit lines (outputs)."""
        rows, cols = self.g.shape
        return rows, cols

    @cached_property
    def key(self) -> str:
        """SHA-256 of the conductances, wire resistance, ``R_f`` and device law (cache key)."""
        digest = hashlib.sha256(b"analogtorch-spice-tile-v2")
        settings = (self.shape, self.wire_resistance_ohm, self.feedback_ohm, self.device)
        digest.update(repr(settings).encode())
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
            f"R_f = {_fmt(self.feedback_ohm)} ohm, impedance scale k = {_fmt(k)}, "
            f"devices {self.device}"
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
            line = self.device.netlist_line(
                f"d{i}_{j}", row_node[i][j], col_node[i][j], float(self.g[i, j]), k
            )
            lines.append(line)
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
        lines = [
            "analogtorch crossbar tile",
            SOLVER_OPTIONS,
            "vvector vector 0 dc 0",
            *dacs,
            self.circuit,
        ]
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
    device: DeviceIV | None = None,
) -> str:
    """ngspice netlist of one array ``g`` (rows, cols), siemens, driven by ``v_in``, volts.

    ``v_in`` is (rows,) or (batch, rows); ``wire_resistance_ohm`` is one wire segment, ohms,
    >= 0; ``feedback_ohm`` the amplifiers' transresistance, ohms; ``device`` the devices' I-V
    law (None: resistors). A differential tile is two such netlists, one for ``G+`` and one
    for ``G-``.
    """
    tile = SpiceTile.from_conductances(g, wire_resistance_ohm, feedback_ohm, device)
    return tile.netlist(v_in)


def simulate_tile(
    g: ArrayLike,
    v_in: ArrayLike,
    wire_resistance_ohm: float,
    *,
    g_neg: ArrayLike | None = None,
    feedback_ohm: float = DEFAULT_FEEDBACK_OHM,
    device: DeviceIV | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workdir: str | Path | None = None,
) -> Array:
    """Output currents of one tile from ngspice, amperes: (cols,) or (batch, cols).

    The SPICE counterpart of :func:`analogtorch.hardware.nodal.solve_crossbar` (same first
    three arguments). With ``g_neg`` (rows, cols), ``g`` is ``G+`` and the currents are
    ``I+ - I-``, from two concurrent runs. ``device``: the devices' I-V law (None: resistors).
    """
    tiles = [SpiceTile.from_conductances(g, wire_resistance_ohm, feedback_ohm, device)]
    if g_neg is not None:
        tiles.append(SpiceTile.from_conductances(g_neg, wire_resistance_ohm, feedback_ohm, device))
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
    """``G_eff`` (rows, cols), siemens, with ``I = V @ G_eff``: one run of the unit inputs
    through an array of resistors (a linear circuit).

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
