"""Anderson acceleration, type II (Walker & Ni, "Anderson Acceleration for Fixed-Point
Iterations", SIAM J. Numer. Anal. 49(4):1715–1735, 2011, doi:10.1137/10078356X).

With residuals ``g_t = f(z_t) − z_t`` and the last ``m_t = min(m, t)`` differences
``ΔZ = [z_{i+1} − z_i]``, ``ΔG = [g_{i+1} − g_i]`` (columns), each step solves

    γ = argmin_γ ‖g_t − ΔG γ‖₂,     z_{t+1} = z_t + β g_t − (ΔZ + β ΔG) γ,

with mixing β = ``options.damping``; ``m = 0`` would be the damped iteration. The
least-squares problem is solved per sample through its (m_t × m_t) normal equations
``(ΔGᵀΔG + λ s I) γ = ΔGᵀ g_t``, where the Tikhonov weight is
``λ = max(options.regularization, machine epsilon)`` times the mean diagonal ``s`` of the
Gram matrix, so the regularisation does not depend on the scale of the residuals.

Bookkeeping, O(batch · m · n) per iteration on top of the one map evaluation: the last
``m`` differences ``ΔG`` and ``ΔX = ΔZ + β ΔG = Δ(z + β g)`` (the only combination the
step needs) are kept in preallocated ring buffers, the Gram matrix ``ΔGᵀΔG`` is updated in
place (only the row and column of the newest difference are computed), and the new Gram
column, the right-hand side and the step are each one batched matrix product.

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


def _mix(
    plain: torch.Tensor,
    gram: torch.Tensor,
    rhs: torch.Tensor,
    dx: torch.Tensor,
    regularization: float,
) -> torch.Tensor:
    """The Anderson step ``plain − ΔX γ`` with ``(gram + λ s I) γ = rhs``.

    ``plain`` = ``z + β g`` (batch, n); ``gram`` = ``ΔGᵀΔG`` (batch, k, k); ``rhs`` =
    ``ΔGᵀ g`` (batch, k); ``dx`` = ``ΔZ + β ΔG`` as rows (batch, k, n). Samples whose
    solve fails or whose step is not finite keep ``plain``.
    """
    k = gram.shape[-1]
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1)  # (batch,)
    weight = max(regularization, torch.finfo(plain.dtype).eps)
    eye = torch.eye(k, dtype=plain.dtype, device=plain.device)
    system = torch.addcmul(gram, (weight * scale)[:, None, None], eye)
    gamma, info = torch.linalg.solve_ex(system, rhs.unsqueeze(-1))  # (batch, k, 1)
    # plain − γᵀ ΔX per sample, in one batched (1 × k)(k × n) product.
    step = torch.baddbmm(plain.unsqueeze(1), gamma.transpose(1, 2), dx, alpha=-1).squeeze(1)
    gamma = gamma.squeeze(-1)
    if step.device.type == "cpu":  # (a free check on CPU, a sync on GPUs)
        # The usual case at once: finite row sums mean finite rows.
        ok = (info == 0) & torch.isfinite(gamma.sum(dim=-1)) & torch.isfinite(step.sum(dim=-1))
        if bool(ok.all()):
            return step
    ok = (info == 0) & finite_rows(gamma) & finite_rows(step)
    return torch.where(ok.unsqueeze(-1), step, plain)


def _anderson_step(
    z: torch.Tensor,
    g: torch.Tensor,
    dz: torch.Tensor,
    dg: torch.Tensor,
    beta: float,
    regularization: float,
) -> torch.Tensor:
    """One type-II Anderson step for flat iterates, from scratch (the solver keeps the Gram
    matrix up to date instead of recomputing it).

    ``z``, ``g``: (batch, n) iterate and residual; ``dz``, ``dg``: (batch, k, n) their last
    ``k`` differences. Falls back per sample to ``z + β g`` where the solve fails.
    """
    gram = torch.bmm(dg, dg.transpose(1, 2))  # (batch, k, k)
    rhs = torch.bmm(dg, g.unsqueeze(-1)).squeeze(-1)  # (batch, k)
    return _mix(z + beta * g, gram, rhs, dz + beta * dg, regularization)


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
        beta, memory, regularization = options.damping, options.memory, options.regularization
        batch, n = z.shape
        # Ring buffers: slot i holds the i-th difference modulo ``memory``. The order of the
        # columns does not change the least squares, so nothing is ever shifted.
        dg = z.new_empty(batch, memory, n)  # ΔG
        dx = z.new_empty(batch, memory, n)  # ΔZ + β ΔG = Δ(z + β g)
        gram = z.new_empty(batch, memory, memory)  # ΔGᵀΔG, valid in [:k, :k]
        stored = 0
        plain_prev = g_prev = None
        while True:
            # Every tensor kept across iterations is computed here, never f's own output,
            # so a map that returns (or later reuses) a buffer of its own is safe.
            fz = f_flat(z)
            g = fz - z
            if monitor.observe(z, fz, g):
                break
            plain = torch.add(z, g, alpha=beta)  # the damped step z + β g
            if g_prev is None:
                z_next = plain
            else:
                slot = stored % memory
                stored += 1
                k = min(stored, memory)
                dg_new = torch.sub(g, g_prev, out=dg[:, slot])
                torch.sub(plain, plain_prev, out=dx[:, slot])
                # Only the new row/column of ΔGᵀΔG, O(batch · k · n) rather than
                # O(batch · k² · n), and the right-hand side ΔGᵀ g, as batched (1 × n)(n × k)
                # products.
                history = dg[:, :k].transpose(1, 2)  # (batch, n, k)
                column = torch.bmm(dg_new.unsqueeze(1), history).squeeze(1)
                gram[:, slot, :k] = column
                gram[:, :k, slot] = column
                rhs = torch.bmm(g.unsqueeze(1), history).squeeze(1)
                z_next = _mix(plain, gram[:, :k, :k], rhs, dx[:, :k], regularization)
            plain_prev, g_prev, z = plain, g, z_next
        return monitor.result(shape)
