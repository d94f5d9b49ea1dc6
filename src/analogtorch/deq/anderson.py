"""Anderson acceleration, type II (Walker & Ni, "Anderson Acceleration for Fixed-Point
Iterations", SIAM J. Numer. Anal. 49(4):1715–1735, 2011, doi:10.1137/10078356X).

With residuals ``g_t = f(z_t) − z_t`` and the last ``m_t = min(m, t)`` differences
``ΔZ = [z_{i+1} − z_i]``, ``ΔG = [g_{i+1} − g_i]`` (columns), each step solves

    γ = argmin_γ ‖g_t − ΔG γ‖₂,     z_{t+1} = z_t + β g_t − (ΔZ + β ΔG) γ,

with mixing β = ``options.damping``; ``m = 0`` would be the damped iteration. The
least-squares problem is solved per sample through its (m_t × m_t) normal equations
``(ΔGᵀΔG + λ s I) γ = ΔGᵀ g_t`` with batched matrix products, where the Tikhonov weight
is ``λ = max(options.regularization, machine epsilon)`` times the mean diagonal ``s`` of the
Gram matrix, so the regularisation does not depend on the scale of the residuals.

Safeguard: a sample whose Gram system is singular (``torch.linalg.solve_ex`` reports it,
e.g. all differences zero once that sample has converged) or whose step is not finite
takes the plain damped step ``z_t + β g_t`` instead. One map evaluation per iteration.
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


def _anderson_step(
    z: torch.Tensor,
    g: torch.Tensor,
    dz: torch.Tensor,
    dg: torch.Tensor,
    beta: float,
    regularization: float,
) -> torch.Tensor:
    """One type-II Anderson step for flat iterates.

    ``z``, ``g``: (batch, n) iterate and residual; ``dz``, ``dg``: (batch, k, n) their last
    ``k`` differences. Falls back per sample to ``z + β g`` where the solve fails.
    """
    plain = z + beta * g
    k = dg.shape[1]
    gram = torch.bmm(dg, dg.transpose(1, 2))  # (batch, k, k)
    rhs = torch.bmm(dg, g.unsqueeze(-1))  # (batch, k, 1)
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1)  # (batch,)
    weight = max(regularization, torch.finfo(z.dtype).eps)
    eye = torch.eye(k, dtype=z.dtype, device=z.device)
    gram = gram + (weight * scale)[:, None, None] * eye
    gamma, info = torch.linalg.solve_ex(gram, rhs)
    step = plain - torch.bmm((dz + beta * dg).transpose(1, 2), gamma).squeeze(-1)
    ok = (info == 0) & finite_rows(gamma.squeeze(-1)) & finite_rows(step)
    return torch.where(ok.unsqueeze(-1), step, plain)


def solve(
    f: FixedPointMap, z0: torch.Tensor, options: SolverOptions = DEFAULT_OPTIONS
) -> tuple[torch.Tensor, SolverStats]:
    """Find ``z = f(z)`` from ``z0`` (batch, ...) by Anderson acceleration with memory
    ``options.memory`` and mixing ``options.damping``.

    Returns the iterate with the lowest residual seen (shape of ``z0``) and the stats.
    """
    options = check_options(options)
    with torch.no_grad():
        f_flat, z, shape = flatten_map(f, z0)
        monitor = SolveMonitor("anderson", options, z)
        beta, memory = options.damping, options.memory
        batch, n = z.shape
        dz = z.new_zeros(batch, memory, n)
        dg = z.new_zeros(batch, memory, n)
        stored = 0
        z_prev = g_prev = None
        while True:
            fz = f_flat(z)
            if monitor.observe(z, fz):
                break
            g = fz - z
            if g_prev is None:
                z_next = z + beta * g
            else:
                # A ring buffer: the order of the columns does not change the least squares.
                slot = stored % memory
                dz[:, slot] = z - z_prev
                dg[:, slot] = g - g_prev
                stored += 1
                k = min(stored, memory)
                z_next = _anderson_step(z, g, dz[:, :k], dg[:, :k], beta, options.regularization)
            z_prev, g_prev, z = z, g, z_next
        return monitor.result(shape)
