"""Study helpers every layer may use: reading a study YAML, naming cells, mean ± std (the
cells themselves run through :func:`analogtorch.runs.run_cells`)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config_files import load_yaml_mapping
from .hardware.profile import HardwareProfile


def slug(text: str) -> str:
    """``text`` as a cell key / file name: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")


def read_config(
    path: str | Path, complete: Callable[[dict[str, Any], str], dict[str, Any]]
) -> dict[str, Any]:
    """Read a study YAML (``name`` defaults to the file name) and ``complete`` it (the
    study's defaults and checks, called with the mapping and the path for messages)."""
    path = Path(path)
    data = load_yaml_mapping(path, "study config")
    return complete({"name": path.stem, **data}, str(path))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def study_profile(config: dict[str, Any]) -> HardwareProfile:
    """A study's base hardware profile: ``profile`` (a preset name or a YAML profile file)
    with ``profile_changes`` applied."""
    return HardwareProfile.from_spec(config["profile"]).replace(**config["profile_changes"])
