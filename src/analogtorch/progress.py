"""Progress of long work: rich bars on a terminal, plain lines elsewhere, nothing when quiet.

``progress_bar(enabled)`` yields an object with ``add_task(text, total=n, completed=k)`` and
``advance(task)``. On a terminal it is a rich ``Progress``; when standard error is not a
terminal (a log file, a background job) it writes one line per task at most every
``LINE_INTERVAL_S`` seconds and when the task is done, so a long run can be followed with
``tail``. :func:`set_quiet` (the command line's ``--quiet``) turns every bar off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LINE_INTERVAL_S = 30.0
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn every progress display off (``True``) or back on."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


class _Lines:
    """``add_task`` / ``advance`` that print ``text: k/n (elapsed)`` lines to stderr."""

    def __init__(self) -> None:
        self._tasks: dict[int, dict[str, Any]] = {}

    def add_task(self, description: str, total: float | None = None, completed: float = 0) -> int:
        task = len(self._tasks)
        now = time.monotonic()
        self._tasks[task] = {
            "text": description,
            "total": total,
            "done": completed,
            "start": now,
            "printed": now,
        }
        return task

    def advance(self, task: int, advance: float = 1) -> None:
        state = self._tasks[task]
        state["done"] += advance
        now = time.monotonic()
        finished = state["total"] is not None and state["done"] >= state["total"]
        if finished or now - state["printed"] >= LINE_INTERVAL_S:
            state["printed"] = now
            total = "" if state["total"] is None else f"/{state['total']:g}"
            print(
                f"{state['text']}: {state['done']:g}{total} ({now - state['start']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A progress display; add tasks with ``bar.add_task(text, total=n)`` and move them on
    with ``bar.advance(task)`` (see the module docstring for where it goes)."""
    if not enabled or _quiet:
        bar = Progress(disable=True)
        with bar:
            yield bar
        return
    if not sys.stderr.isatty():
        yield _Lines()
        return
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    with bar:
        yield bar
