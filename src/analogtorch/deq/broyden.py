"""Limited-memory "good" Broyden's method for ``g(z) = f(z) − z = 0`` (Broyden, "A class of
methods for solving nonlinear simultaneous equations", Math. Comp. 19:577–593, 1965), in
the inverse-Jacobian form used for deep equilibrium models by Bai, Kolter & Koltun, "Deep
Equilibrium Models", NeurIPS 2019 (arXiv:1909.01377).

The inverse Jacobian of ``g`` is approximated as ``H = −I + Σ_i u_i v_iᵀ`` with at most
``options.memory`` rank-one terms, so the first step ``z − H g = z + g = f(z)`` is a plain
iteration. When the memory is full the method restarts from ``H = −I`` (keeping only the
newest secant pair), as in Kelley, "Iterative Methods for Linear and Nonlinear Equations",
SIAM 1995, ch. 7: overwriting the oldest term instead breaks the secant conditions the
newer terms were built on (it diverged on a symmetric contractive affine map when we tried
it), while a restart keeps every stored update consistent.

Each iteration takes the full quasi-Newton step ``z_{t+1} = z_t − H g_t`` (no line search)
and applies the good-Broyden update in Sherman–Morrison form, with ``Δz = z_{t+1} − z_t``
and ``Δg = g_{t+1} − g_t``:

    H ← H + (Δz − H Δg) Δzᵀ H / (Δzᵀ H Δg),   i.e.  u = (Δz − H Δg) / (Δzᵀ H Δg),  vᵀ = Δzᵀ H.

Safeguards, per sample: the update is skipped when the denominator is tiny relative to
``‖Hᵀ Δz‖ ‖Δg‖`` (``√eps`` of the dtype) or anything is not finite, and a quasi-Newton step
that is not finite is replaced by the plain step ``g_t``. One map evaluation per iteration.
"""

from __future__ import annotations

import torch

from analogtorch.deq.options import SolverOptions, SolverStats
from analogtorch.deq.residual import (
    DEFAULT_OPTIONS,
    FixedPointMap,
    SolveMonitor,
    check_options,
    finite_rows,
    flatten_map,
)


def _apply(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``H x`` for ``H = −I + Σ_i u_i v_iᵀ``; u, v: (batch, m, n), x: (batch, n)."""
    return -x + torch.bmm(u.transpose(1, 2), torch.bmm(v, x.unsqueeze(-1))).squeeze(-1)


def _apply_transposed(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``Hᵀ x`` (the row vector ``xᵀ H`` as a column) for ``H = −I + Σ_i u_i v_iᵀ``."""
    return -x + torch.bmm(v.transpose(1, 2), torch.bmm(u, x.unsqueeze(-1))).squeeze(-1)


def solve(
    f: FixedPointMap, z0: torch.Tensor, options: SolverOptions = DEFAULT_OPTIONS
) -> tuple[torch.Tensor, SolverStats]:
    """Find ``z = f(z)`` from ``z0`` (batch, ...) by limited-memory good Broyden with
    ``options.memory`` rank-one updates.

    Returns the iterate with the lowest residual seen (shape of ``z0``) and the stats.
    """
    options = check_options(options)
    with torch.no_grad():
        f_flat, z, shape = flatten_map(f, z0)
        monitor = SolveMonitor("broyden", options, z)
        memory = options.memory
        batch, n = z.shape
        u = z.new_zeros(batch, memory, n)
        v = z.new_zeros(batch, memory, n)
        tiny = torch.finfo(z.dtype).eps ** 0.5
        stored = 0
        z_prev = g_prev = None
        while True:
            fz = f_flat(z)
            g = fz - z
            if monitor.observe(z, fz, g):
                break
            if g_prev is not None:
                if stored == memory:
                    # Restart from H = −I: dropping only the oldest pair would leave a
                    # product of updates that no longer satisfies any secant condition.
                    u.zero_()
                    v.zero_()
                    stored = 0
                dz, dg = z - z_prev, g - g_prev
                v_new = _apply_transposed(u, v, dz)
                denominator = (v_new * dg).sum(dim=-1)
                bound = tiny * torch.linalg.vector_norm(v_new, dim=-1)
                bound = bound * torch.linalg.vector_norm(dg, dim=-1)
                u_new = (dz - _apply(u, v, dg)) / denominator.unsqueeze(-1)
                ok = (denominator.abs() > bound) & finite_rows(u_new) & finite_rows(v_new)
                ok = ok.unsqueeze(-1)
                u[:, stored] = torch.where(ok, u_new, 0.0)
                v[:, stored] = torch.where(ok, v_new, 0.0)
                stored += 1
            step = -_apply(u, v, g)
            step = torch.where(finite_rows(step).unsqueeze(-1), step, g)
            z_prev, g_prev, z = z, g, z + step
        return monitor.result(shape)
