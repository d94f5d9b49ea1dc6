"""Study cells on a Ray cluster (``--backend ray``).

The driver ships each cell's parameters (data folders and the run folder already resolved to
absolute paths by the caller, so a worker never depends on its own environment), the workers
compute the cells, and every record comes back to the driver, which writes it into its run
folder. Connects to a running cluster when ``RAY_ADDRESS`` names one (``ray start --head``;
see docs/ray.md), else starts a local one. A cell that raises is reported in one line naming
the cell; its traceback goes to ``logs/<cell>.log`` in the run folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .files import write_atomic

Cell = tuple[str, dict[str, Any]]


class CellFailedError(RuntimeError):
    """One or more study cells raised on the cluster (the message names them)."""


def run_on_ray(
    todo: Sequence[Cell],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    finished: Callable[[str, dict[str, Any], dict[str, Any]], None],
    log_dir: Path,
) -> None:
    """Run ``todo`` as Ray tasks; ``finished(key, params, result)`` is called on the driver as
    each one arrives. Cells that raise do not stop the others; they are reported together at
    the end as a :class:`CellFailedError`."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("backend='ray' needs Ray: pip install 'analogtorch[ray]'") from error
    if not ray.is_initialized():
        ray.init(
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="warning",  # the command line prints its own lines only
        )
    remote = ray.remote(run)
    pending = {remote.remote(params): (key, params) for key, params in todo}
    failures = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        key, params = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayTaskError as error:
            text = re.sub(r"\x1b\[[0-9;]*m", "", getattr(error, "traceback_str", "") or str(error))
            log = write_atomic(
                log_dir / f"{key}.log",
                f"cell {key} failed on the Ray cluster; parameters {params}\n"
                f"Traceback (on the worker):\n{text}\n",
            )
            cause = error.cause if error.cause is not None else error
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            failures.append(f"{key} ({type(cause).__name__}: {reason}; traceback in {log})")
            continue
        finished(key, params, result)
    if failures:
        raise CellFailedError(
            f"{len(failures)} of {len(todo)} cells failed on the Ray cluster: "
            + "; ".join(failures)
        )
