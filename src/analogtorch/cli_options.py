"""Options every command shares (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutOption = Annotated[
    Path | None, typer.Option(help="run folder (default runs/<command>-<name>-<config hash>)")
]
OverwriteOption = Annotated[
    bool, typer.Option(help="empty an existing run folder of another configuration first")
]
