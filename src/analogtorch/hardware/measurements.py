"""Device and crossbar measurements for calibration: the CSV schema and its validating loader.

One CSV file holds any mix of measurement kinds in long format, one measurement per row.
The ``kind`` column says which; each kind needs its own columns (a cell of a column that a
row's kind does not use is ignored, so leave it empty). SI units throughout.

============== ========================================= =================================
kind           required columns                          meaning
============== ========================================= =================================
drift          device, time_s, conductance_siemens       conductance of ``device`` read
               (optional: target_siemens)                ``time_s`` s after programming
programming    target_siemens, conductance_siemens       programmed vs target conductance
transfer       voltage_v, current_a, conductance_siemens I-V point of a device whose
                                                         conductance is ``I(v_read)/v_read``
ir_conductance crossbar, row, col, conductance_siemens   wire-free device conductance
ir_voltage     crossbar, vector, row, voltage_v          input ``vector``'s word-line volts
ir_current     crossbar, vector, col, current_a          measured bit-line output current
============== ========================================= =================================

Constraints: numbers are finite; ``time_s``, ``conductance_siemens`` and ``target_siemens``
are >= 0; ``row``, ``col`` and ``vector`` are integers >= 0; each device's drift times are
non-decreasing in file order; every crossbar gives each (row, col) conductance exactly once
and, for every input vector, every row's voltage and every column's current exactly once.
Lines starting with ``#`` are comments. Any violation raises :class:`MeasurementError`
naming the file, the line (the header is line 1), the data row and the column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "COLUMNS",
    "KINDS",
    "CrossbarMeasurement",
    "DriftMeasurements",
    "MeasurementError",
    "Measurements",
    "ProgrammingMeasurements",
    "TransferMeasurements",
    "load_measurements",
]

KINDS: dict[str, tuple[str, ...]] = {
    "drift": ("device", "time_s", "conductance_siemens"),
    "programming": ("target_siemens", "conductance_siemens"),
    "transfer": ("voltage_v", "current_a", "conductance_siemens"),
    "ir_conductance": ("crossbar", "row", "col", "conductance_siemens"),
    "ir_voltage": ("crossbar", "vector", "row", "voltage_v"),
    "ir_current": ("crossbar", "vector", "col", "current_a"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {"drift": ("target_siemens",)}

# column -> (type, description); type is "text", "index" (integer >= 0), "nonneg" or "real".
COLUMNS: dict[str, tuple[str, str]] = {
    "kind": ("text", "measurement kind: " + ", ".join(KINDS)),
    "device": ("text", "device identifier (any text)"),
    "crossbar": ("text", "crossbar identifier (any text)"),
    "time_s": ("nonneg", "time since programming, s"),
    "target_siemens": ("nonneg", "target conductance, S"),
    "conductance_siemens": ("nonneg", "measured (or wire-free) conductance, S"),
    "voltage_v": ("real", "applied voltage, V"),
    "current_a": ("real", "measured current, A"),
    "row": ("index", "word-line index, 0-based"),
    "col": ("index", "bit-line index, 0-based"),
    "vector": ("index", "input-vector index within the crossbar, 0-based"),
}
# What a device or array measurement can physically be: a value beyond these is an
# outlier or a unit mistake (µS written as S), refused with the line that holds it.
LIMITS: dict[str, float] = {
    "time_s": 3.2e9,  # 100 years
    "target_siemens": 1.0,
    "conductance_siemens": 1.0,
    "voltage_v": 100.0,
    "current_a": 10.0,
}


class MeasurementError(ValueError):
    """A measurement file is malformed; the message names file, line, data row and column."""


@dataclass(frozen=True)
class DriftMeasurements:
    """Conductance of each device at several times since programming.

    ``device`` indexes ``device_names``; times in s, conductances in S, all arrays (n,).
    """

    device: NDArray[np.int64]
    time_s: NDArray[np.float64]
    conductance_siemens: NDArray[np.float64]
    device_names: tuple[str, ...] = ()
    target_siemens: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        _same_length(
            "drift", device=self.device, time_s=self.time_s, conductance=self.conductance_siemens
        )

    @property
    def n_devices(self) -> int:
        return len(np.unique(self.device))


@dataclass(frozen=True)
class ProgrammingMeasurements:
    """Programmed conductance against its target, both in S, arrays (n,)."""

    target_siemens: NDArray[np.float64]
    conductance_siemens: NDArray[np.float64]

    def __post_init__(self) -> None:
        _same_length(
            "programming", target=self.target_siemens, conductance=self.conductance_siemens
        )


@dataclass(frozen=True)
class TransferMeasurements:
    """Device I-V points: voltage (V), current (A), nominal conductance (S), arrays (n,)."""

    voltage_v: NDArray[np.float64]
    current_a: NDArray[np.float64]
    conductance_siemens: NDArray[np.float64]

    def __post_init__(self) -> None:
        _same_length(
            "transfer",
            voltage=self.voltage_v,
            current=self.current_a,
            conductance=self.conductance_siemens,
        )


@dataclass(frozen=True)
class CrossbarMeasurement:
    """One crossbar read with several input vectors (the IR-drop experiment).

    ``conductance_siemens`` (rows, cols) are the wire-free device conductances,
    ``voltage_v`` (vectors, rows) the word-line inputs and ``current_a`` (vectors, cols) the
    measured bit-line currents.
    """

    name: str
    conductance_siemens: NDArray[np.float64]
    voltage_v: NDArray[np.float64]
    current_a: NDArray[np.float64]

    def __post_init__(self) -> None:
        rows, cols = np.shape(self.conductance_siemens)
        n_vec = np.shape(self.voltage_v)[0]
        if np.shape(self.voltage_v) != (n_vec, rows) or np.shape(self.current_a) != (n_vec, cols):
            raise ValueError(
                f"crossbar {self.name!r}: shapes conductance {np.shape(self.conductance_siemens)}"
                f", voltage {np.shape(self.voltage_v)}, current {np.shape(self.current_a)}; "
                "expected (rows, cols), (vectors, rows), (vectors, cols)"
            )


@dataclass(frozen=True)
class Measurements:
    """Everything one measurement file holds; a kind that is absent is ``None`` / empty."""

    drift: DriftMeasurements | None = None
    programming: ProgrammingMeasurements | None = None
    transfer: TransferMeasurements | None = None
    ir_drop: tuple[CrossbarMeasurement, ...] = ()
    source: str = "<arrays>"

    @property
    def kinds(self) -> list[str]:
        """The calibration groups present: drift, programming, transfer, ir_drop."""
        present = {
            "drift": self.drift is not None,
            "programming": self.programming is not None,
            "transfer": self.transfer is not None,
            "ir_drop": bool(self.ir_drop),
        }
        return [kind for kind, there in present.items() if there]


def _same_length(kind: str, **arrays: object) -> None:
    lengths = {name: len(np.atleast_1d(np.asarray(a))) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{kind} measurements: arrays of different lengths {lengths}")


# -- loading --------------------------------------------------------------------------------


@dataclass
class _Where:
    """Position of one record, for error messages."""

    path: str
    line: int
    data_row: int

    def error(self, column: str, problem: str) -> MeasurementError:
        return MeasurementError(
            f"{self.path}: line {self.line} (data row {self.data_row}), column {column!r}: "
            f"{problem}"
        )


@dataclass
class _Crossbar:
    conductance: dict[tuple[int, int], float] = field(default_factory=dict)
    voltage: dict[tuple[int, int], float] = field(default_factory=dict)
    current: dict[tuple[int, int], float] = field(default_factory=dict)
    first_line: int = 0


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank, non-comment record; the header comes first."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        for cells in reader:
            if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
                continue
            yield reader.line_num, [c.strip() for c in cells]


def _parse_value(text: str, column: str, where: _Where) -> float | int | str:
    kind, description = COLUMNS[column]
    if text == "":
        raise where.error(column, f"empty, but this row's kind needs it ({description})")
    if kind == "text":
        return text
    try:
        value = float(text)
    except ValueError:
        raise where.error(column, f"{text!r} is not a number ({description})") from None
    if not math.isfinite(value):
        raise where.error(column, f"{text!r} is not finite; give a finite number ({description})")
    if kind == "index":
        if value != int(value) or value < 0:
            raise where.error(column, f"{text!r} is not an integer >= 0 ({description})")
        return int(value)
    if kind == "nonneg" and value < 0:
        raise where.error(column, f"{text!r} is negative; must be >= 0 ({description})")
    if column in LIMITS and abs(value) > LIMITS[column]:
        raise where.error(
            column,
            f"{text!r} is beyond the physical limit {LIMITS[column]:g} ({description}); an "
            "outlier or a unit mistake",
        )
    return value


def load_measurements(path: str | Path) -> Measurements:
    """Read and validate a measurement CSV (schema in the module docstring).

    Raises:
        FileNotFoundError: no such file.
        MeasurementError: the file breaks the schema; the message names the file, the line
            (header = line 1), the data row (first data row = 1) and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"measurement file {str(path)!r} does not exist")
    records = _records(path)
    header_line, header = next(records, (1, []))
    if not header:
        raise MeasurementError(f"{path}: empty file; expected a header line with 'kind' etc.")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise MeasurementError(
            f"{path}: line {header_line} (header): unknown column(s) {unknown}; known columns: "
            f"{', '.join(COLUMNS)}"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise MeasurementError(f"{path}: line {header_line} (header): column(s) {duplicated} twice")
    if "kind" not in header:
        raise MeasurementError(f"{path}: line {header_line} (header): missing column 'kind'")
    index = {name: i for i, name in enumerate(header)}

    drift: dict[str, list] = {"device": [], "time_s": [], "conductance_siemens": []}
    drift_target: list[float] = []
    last_time: dict[str, tuple[float, int]] = {}
    programming: dict[str, list] = {"target_siemens": [], "conductance_siemens": []}
    transfer: dict[str, list] = {"voltage_v": [], "current_a": [], "conductance_siemens": []}
    crossbars: dict[str, _Crossbar] = {}
    data_row = 0
    for line, cells in records:
        data_row += 1
        where = _Where(str(path), line, data_row)
        if len(cells) > len(header):
            raise where.error(
                header[-1], f"{len(cells)} cells but the header has {len(header)} columns"
            )
        cells = cells + [""] * (len(header) - len(cells))
        kind = cells[index["kind"]]
        if kind not in KINDS:
            raise where.error("kind", f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        missing = [c for c in KINDS[kind] if c not in index]
        if missing:
            raise where.error(
                missing[0],
                f"missing column(s) {missing} in the header, required by kind {kind!r}",
            )
        row = {c: _parse_value(cells[index[c]], c, where) for c in KINDS[kind]}
        for c in _OPTIONAL.get(kind, ()):
            if c in index and cells[index[c]] != "":
                row[c] = _parse_value(cells[index[c]], c, where)

        if kind == "drift":
            device, time_s = str(row["device"]), float(row["time_s"])
            previous = last_time.get(device)
            if previous is not None and time_s < previous[0]:
                raise where.error(
                    "time_s",
                    f"time {time_s:g} s of device {device!r} is earlier than {previous[0]:g} s "
                    f"on line {previous[1]}; sort each device's measurements by time",
                )
            last_time[device] = (time_s, line)
            for c in drift:
                drift[c].append(row[c])
            drift_target.append(float(row.get("target_siemens", math.nan)))
        elif kind == "programming":
            for c in programming:
                programming[c].append(row[c])
        elif kind == "transfer":
            for c in transfer:
                transfer[c].append(row[c])
        else:
            _add_crossbar_entry(crossbars, kind, row, where)

    if data_row == 0:
        raise MeasurementError(f"{path}: no data rows after the header (line {header_line})")
    return Measurements(
        drift=_drift(drift, drift_target) if drift["device"] else None,
        programming=(
            ProgrammingMeasurements(*(np.asarray(programming[c], float) for c in programming))
            if programming["target_siemens"]
            else None
        ),
        transfer=(
            TransferMeasurements(*(np.asarray(transfer[c], float) for c in transfer))
            if transfer["voltage_v"]
            else None
        ),
        ir_drop=tuple(_crossbar(name, xb, str(path)) for name, xb in crossbars.items()),
        source=str(path),
    )


def _drift(columns: dict[str, list], target: list[float]) -> DriftMeasurements:
    names, device = np.unique(np.asarray(columns["device"], dtype=str), return_inverse=True)
    target_arr = np.asarray(target, float)
    return DriftMeasurements(
        device=device.astype(np.int64),
        time_s=np.asarray(columns["time_s"], float),
        conductance_siemens=np.asarray(columns["conductance_siemens"], float),
        device_names=tuple(str(n) for n in names),
        target_siemens=None if np.all(np.isnan(target_arr)) else target_arr,
    )


_CROSSBAR_ENTRY = {
    "ir_conductance": ("conductance", ("row", "col"), "conductance_siemens"),
    "ir_voltage": ("voltage", ("vector", "row"), "voltage_v"),
    "ir_current": ("current", ("vector", "col"), "current_a"),
}


def _add_crossbar_entry(
    crossbars: dict[str, _Crossbar], kind: str, row: dict, where: _Where
) -> None:
    table, key_columns, value_column = _CROSSBAR_ENTRY[kind]
    xb = crossbars.setdefault(str(row["crossbar"]), _Crossbar(first_line=where.line))
    entries = getattr(xb, table)
    key = tuple(int(row[c]) for c in key_columns)
    if key in entries:
        names = ", ".join(f"{c}={k}" for c, k in zip(key_columns, key, strict=True))
        raise where.error(
            key_columns[-1], f"{kind} of crossbar {row['crossbar']!r} at {names} given twice"
        )
    entries[key] = float(row[value_column])


def _crossbar(name: str, xb: _Crossbar, path: str) -> CrossbarMeasurement:
    where = f"{path}: crossbar {name!r} (first on line {xb.first_line})"
    if not xb.conductance:
        raise MeasurementError(f"{where}: no ir_conductance rows (column 'conductance_siemens')")
    rows = 1 + max(r for r, _ in xb.conductance)
    cols = 1 + max(c for _, c in xb.conductance)
    vectors = sorted({v for v, _ in xb.voltage} | {v for v, _ in xb.current})
    if not vectors:
        raise MeasurementError(f"{where}: no ir_voltage / ir_current rows (input vectors)")
    shape = f"a {rows} x {cols} crossbar"
    _require_grid(xb.conductance, range(rows), cols, "ir_conductance", ("row", "col"), where, shape)
    _require_grid(xb.voltage, vectors, rows, "ir_voltage", ("vector", "row"), where, shape)
    _require_grid(xb.current, vectors, cols, "ir_current", ("vector", "col"), where, shape)
    g = np.array([[xb.conductance[(r, c)] for c in range(cols)] for r in range(rows)])
    v = np.array([[xb.voltage[(k, r)] for r in range(rows)] for k in vectors])
    i = np.array([[xb.current[(k, c)] for c in range(cols)] for k in vectors])
    return CrossbarMeasurement(name, g, v, i)


def _require_grid(
    entries: dict[tuple[int, int], float],
    firsts: Iterable[int],
    n_second: int,
    kind: str,
    names: tuple[str, str],
    where: str,
    shape: str,
) -> None:
    """Every (first, second) key present and no second index past ``n_second``."""
    for a in firsts:
        for b in range(n_second):
            if (a, b) not in entries:
                raise MeasurementError(
                    f"{where}: no {kind} row with {names[0]}={a}, {names[1]}={b} ({shape} "
                    "needs every conductance, and every row voltage and column current of each "
                    "input vector)"
                )
    outside = sorted(k for k in entries if k[1] >= n_second)
    if outside:
        a, b = outside[0]
        raise MeasurementError(
            f"{where}: {kind} with {names[0]}={a}, column {names[1]!r}={b} lies outside {shape} "
            "(the grid is set by the ir_conductance rows)"
        )
