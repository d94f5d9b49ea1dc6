"""Options every command shares (one definition, one help text)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

OutOption = Annotated[
    Path | None, typer.Option(help="run folder (default runs/<command>-<name>-<config hash>)")
]
OverwriteOption = Annotated[
    bool, typer.Option(help="empty an existing run folder of another configuration first")
]


class Backend(str, Enum):
    """Where study cells run."""

    local = "local"
    ray = "ray"


BackendOption = Annotated[
    Backend, typer.Option(help="local, or ray (cells on a Ray cluster, see docs/ray.md)")
]
DeviceOption = Annotated[
    str,
    typer.Option(help="where training computes: cpu, cuda, cuda:N or auto (the GPU if any)"),
]
