"""Study helpers every layer may use: reading a study YAML, naming cells, mean ± std (the
cells themselves run through :func:`analogtorch.runs.run_cells`)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml


def slug(text: str) -> str:
    """``text`` as a cell key / file name: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")


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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
