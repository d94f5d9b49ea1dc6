"""YAML presets shipped inside the package (hardware profiles, digital baselines)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def packaged_names(package: str, folder: str) -> list[str]:
    """Sorted names of the ``*.yaml`` files in ``package/folder``."""
    root = resources.files(package).joinpath(folder)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_packaged(package: str, folder: str, name: str, what: str) -> Any:
    """The parsed (safe-loaded) ``package/folder/name.yaml``; unknown names list the known."""
    names = packaged_names(package, folder)
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; available: {', '.join(names)}")
    return yaml.safe_load(resources.files(package).joinpath(folder, f"{name}.yaml").read_text())
