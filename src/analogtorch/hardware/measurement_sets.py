"""Measurement sets as files and as one: ``write_measurements`` writes the CSV schema of
:mod:`.measurements` (the file ``load_measurements`` and ``analogtorch calibrate`` read);
``concat_measurements`` pools several sets, e.g. the rounds of a chip's repeated
characterisation, into one to calibrate on."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..files import write_atomic
from .measurements import (
    COLUMNS,
    DriftMeasurements,
    Measurements,
    ProgrammingMeasurements,
    TransferMeasurements,
)

__all__ = ["concat_measurements", "write_measurements"]


def _cell(value: object) -> str:
    """A CSV cell: integers as such, floats in Python's shortest round-trip form."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _measurement_rows(m: Measurements) -> Iterator[dict[str, object]]:
    """One record per measurement, in the schema's columns (drift rows by device, then time)."""
    g = "conductance_siemens"
    if m.drift is not None:
        d = m.drift
        names = d.device_names or tuple(f"d{i}" for i in range(int(d.device.max()) + 1))
        for i in np.lexsort((d.time_s, d.device)):
            row: dict[str, object] = {
                "kind": "drift",
                "device": names[d.device[i]],
                "time_s": d.time_s[i],
                g: d.conductance_siemens[i],
            }
            if d.target_siemens is not None and not math.isnan(d.target_siemens[i]):
                row["target_siemens"] = d.target_siemens[i]
            yield row
    if m.programming is not None:
        p = m.programming
        for target, conductance in zip(p.target_siemens, p.conductance_siemens, strict=True):
            yield {"kind": "programming", "target_siemens": target, g: conductance}
    if m.transfer is not None:
        t = m.transfer
        for v, i, conductance in zip(t.voltage_v, t.current_a, t.conductance_siemens, strict=True):
            yield {"kind": "transfer", "voltage_v": v, "current_a": i, g: conductance}
    for xb in m.ir_drop:
        name = {"crossbar": xb.name}
        for (r, c), conductance in np.ndenumerate(xb.conductance_siemens):
            yield {**name, "kind": "ir_conductance", "row": r, "col": c, g: conductance}
        for (k, r), v in np.ndenumerate(xb.voltage_v):
            yield {**name, "kind": "ir_voltage", "vector": k, "row": r, "voltage_v": v}
        for (k, c), i in np.ndenumerate(xb.current_a):
            yield {**name, "kind": "ir_current", "vector": k, "col": c, "current_a": i}


def write_measurements(
    measurements: Measurements, path: str | Path, comments: Sequence[str] = ()
) -> Path:
    """Write ``measurements`` as one CSV of the schema above; returns ``path``.

    :func:`load_measurements` reads the file back to the same values (floats are written in
    their shortest round-trip form). Drift rows are grouped by device and sorted by time;
    unnamed drift devices are called ``d<index>``. Each of ``comments`` becomes a ``#`` line
    before the header (provenance: which chip, which plan).
    """
    buffer = io.StringIO()
    for comment in comments:
        buffer.write(f"# {comment}\n")
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), restval="", lineterminator="\n")
    writer.writeheader()
    for row in _measurement_rows(measurements):
        writer.writerow({column: _cell(value) for column, value in row.items()})
    return write_atomic(path, buffer.getvalue())


def concat_measurements(parts: Sequence[Measurements], source: str = "<arrays>") -> Measurements:
    """Every measurement of ``parts`` in one set (to calibrate on all of them at once).

    Drift devices and crossbars of part ``k`` are renamed ``"<k>/<name>"``, so that those of
    different parts stay distinct devices.
    """
    if not parts:
        raise ValueError("concat_measurements: give at least one measurement set")
    drift = None
    drifts = [(k, p.drift) for k, p in enumerate(parts) if p.drift is not None]
    if drifts:
        names: list[str] = []
        devices = []
        for k, d in drifts:
            own = d.device_names or tuple(f"d{i}" for i in range(int(d.device.max()) + 1))
            devices.append(d.device + len(names))
            names += [f"{k}/{name}" for name in own]
        targets = [
            np.full(d.time_s.shape, math.nan) if d.target_siemens is None else d.target_siemens
            for _, d in drifts
        ]
        target = np.concatenate(targets)
        drift = DriftMeasurements(
            device=np.concatenate(devices),
            time_s=np.concatenate([d.time_s for _, d in drifts]),
            conductance_siemens=np.concatenate([d.conductance_siemens for _, d in drifts]),
            device_names=tuple(names),
            target_siemens=None if np.all(np.isnan(target)) else target,
        )
    programming = [p.programming for p in parts if p.programming is not None]
    transfer = [p.transfer for p in parts if p.transfer is not None]
    return Measurements(
        drift=drift,
        programming=ProgrammingMeasurements(
            np.concatenate([p.target_siemens for p in programming]),
            np.concatenate([p.conductance_siemens for p in programming]),
        )
        if programming
        else None,
        transfer=TransferMeasurements(
            np.concatenate([t.voltage_v for t in transfer]),
            np.concatenate([t.current_a for t in transfer]),
            np.concatenate([t.conductance_siemens for t in transfer]),
        )
        if transfer
        else None,
        ir_drop=tuple(
            replace(xb, name=f"{k}/{xb.name}") for k, p in enumerate(parts) for xb in p.ir_drop
        ),
        source=source,
    )
