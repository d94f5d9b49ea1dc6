"""Writing result files so that a crash never leaves a torn one: ``write_atomic``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename
    (atomic on POSIX): readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if isinstance(data, bytes):
        partial.write_bytes(data)
    else:
        partial.write_text(data)
    partial.replace(path)
    return path


def write_json(path: str | Path, record: Any) -> Path:
    """``record`` as indented JSON, atomically (values JSON cannot hold become strings)."""
    return write_atomic(path, json.dumps(record, indent=1, default=str) + "\n")
