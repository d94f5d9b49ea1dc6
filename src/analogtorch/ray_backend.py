"""Study cells on a Ray cluster (``--backend ray``): the driver ships the cells, the workers
compute them, and every record comes back to the driver's run folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Cell = tuple[str, dict[str, Any]]


def run_on_ray(
    todo: Sequence[Cell],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    finished: Callable[[str, dict[str, Any], dict[str, Any]], None],
) -> None:
    """Run ``todo`` as Ray tasks (a running cluster if ``RAY_ADDRESS`` says so, else a local
    one); ``finished(key, params, result)`` is called on the driver as each one arrives."""
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
        finished(key, params, ray.get(done[0]))
