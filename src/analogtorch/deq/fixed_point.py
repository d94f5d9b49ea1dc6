"""Damped fixed-point (Picard) iteration ``z_{t+1} = (1 − λ) z_t + λ f(z_t)``, λ = damping.

Converges for any contractive ``f`` (Banach); damping λ < 1 trades speed for stability on
maps that are only averaged-contractive. One map evaluation per iteration.
"""

from __future__ import annotations

import torch

from analogtorch.deq.options import SolverOptions, SolverStats
from analogtorch.deq.residual import (
    DEFAULT_OPTIONS,
    FixedPointMap,
    SolveMonitor,
    check_options,
    flatten_map,
)


def solve(
    f: FixedPointMap, z0: torch.Tensor, options: SolverOptions = DEFAULT_OPTIONS
) -> tuple[torch.Tensor, SolverStats]:
    """Find ``z = f(z)`` from ``z0`` (batch, ...) by damped iteration.

    Returns the iterate with the lowest residual seen (shape of ``z0``) and the stats.
    """
    options = check_options(options)
    with torch.no_grad():
        f_flat, z, shape = flatten_map(f, z0)
        # Iterates are never f's own output (a map may reuse its output buffer).
        monitor = SolveMonitor("fixed_point", options, z)
        beta = options.damping
        while True:
            fz = f_flat(z)
            if monitor.observe(z, fz):
                break
            z = fz.clone() if beta == 1.0 else torch.lerp(z, fz, beta)
        return monitor.result(shape)
