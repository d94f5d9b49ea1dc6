"""Resumable study cells: each finished cell is a JSON file, a rerun skips it.

A study is a list of independent cells (a key and its parameters). ``run_cells`` runs the
missing ones in order — locally, or on a Ray cluster with ``backend="ray"`` — and writes
each result atomically to ``out_dir/cells/<key>.json`` as soon as it finishes, so an
interrupted study resumes without recomputing anything finished. A stored cell whose
parameters differ from the requested ones is an error, never silently reused.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .progress import progress_bar

Cell = tuple[str, dict[str, Any]]
_KEY = re.compile(r"^[A-Za-z0-9._=+-]+$")


def slug(text: str) -> str:
    """``text`` as a cell key / file name: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")


def cell_path(out_dir: Path, key: str) -> Path:
    if not _KEY.match(key):
        raise ValueError(f"cell key {key!r}: use letters, digits and ._=+- only")
    return out_dir / "cells" / f"{key}.json"


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True))
    partial.replace(path)


def run_cells(
    cells: Sequence[Cell],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    out_dir: str | Path,
    *,
    backend: str = "local",
    label: str = "study",
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell not yet on disk; returns all records (finished ones read back), in
    the order of ``cells``. Each record is ``{"key": key, **params, **run(params)}``."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend={backend!r}: use 'local' or 'ray'")
    out_dir = Path(out_dir)
    keys = [key for key, _ in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("cell keys must be unique")
    todo = []
    for key, params in cells:
        path = cell_path(out_dir, key)
        if not path.exists():
            todo.append((key, params))
            continue
        stored = json.loads(path.read_text())
        changed = {k: (stored.get(k), v) for k, v in params.items() if stored.get(k) != v}
        if changed:
            raise ValueError(
                f"{path} was computed with other parameters {changed} (stored, now): remove it "
                "or use another output folder"
            )
    with progress_bar(show_progress) as bar:
        task = bar.add_task(label, total=len(cells), completed=len(cells) - len(todo))
        if backend == "ray":
            _run_ray(todo, run, out_dir, lambda: bar.advance(task))
        else:
            for key, params in todo:
                _write(cell_path(out_dir, key), {"key": key, **params, **run(params)})
                bar.advance(task)
    return [json.loads(cell_path(out_dir, k).read_text()) for k in keys]


def _run_ray(
    todo: Sequence[Cell],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    out_dir: Path,
    advance: Callable[[], None],
) -> None:
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("backend='ray' needs Ray: pip install 'analogtorch[ray]'") from error
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False)
    remote = ray.remote(run)
    pending = {remote.remote(params): (key, params) for key, params in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        key, params = pending.pop(done[0])
        _write(cell_path(out_dir, key), {"key": key, **params, **ray.get(done[0])})
        advance()


def read_config(
    path: str | Path, complete: Callable[[dict[str, Any], str], dict[str, Any]]
) -> dict[str, Any]:
    """Read a study YAML (``name`` defaults to the file name) and ``complete`` it (the
    study's defaults and checks, called with the mapping and the path for messages)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return complete({"name": path.stem, **data}, str(path))


def run_study_cells(
    config: dict[str, Any],
    cells: Sequence[Cell],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    out_dir: str | Path,
    *,
    backend: str = "local",
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """Write ``out_dir/config.yaml`` (the study as run) and :func:`run_cells` its cells."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_cells(
        cells, run, out_dir, backend=backend, label=config["name"], show_progress=show_progress
    )


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
