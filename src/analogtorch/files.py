"""Result files that a crash or a concurrent writer never tears: ``atomic_path``,
``write_atomic``, ``write_json``, and ``exclusive`` for work done once per file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; on leaving the block it is renamed
    over ``path`` (atomic on POSIX: readers see the old file or the new one, never half of
    one), or removed when the block raised. The name is unique to this process and call,
    so two processes writing the same file (cells on Ray workers) never rename each
    other's temporary file away."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as partial:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data)
    return Path(path)


def write_json(path: str | Path, record: Any) -> Path:
    """``record`` as indented JSON, atomically (values JSON cannot hold become strings)."""
    return write_atomic(path, json.dumps(record, indent=1, default=str) + "\n")


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (an advisory ``flock`` on the file
    ``.<name>.lock`` next to it) until the block ends, waiting while another process holds
    it. Work that fills a file once — a model every cell of a seed starts from — is then
    done once: the second process waits and finds the file written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
