"""Backward modes of a deep equilibrium layer, chosen independently of the forward solver.

The forward pass finds ``z* = f(z*)`` with any solver ``solve(f, z0, options) -> (z, stats)``
under ``torch.no_grad()``; one of these functions then reattaches ``z*`` to the graph of the
parameters θ (and the input x) that ``f`` closes over:

``implicit``
    Implicit differentiation (Bai, Kolter & Koltun, "Deep Equilibrium Models", NeurIPS 2019,
    arXiv:1909.01377). Differentiating ``z* = f(z*, θ)`` gives
    ``dz*/dθ = (I − J)^(−1) ∂f/∂θ`` with ``J = ∂f/∂z`` at ``z*``, so

        ∂L/∂θ = ∂L/∂z* · (I − J)^(−1) · ∂f/∂θ.

    There is no minus sign in this form; the ``−(∂g/∂z)^(−1) ∂g/∂θ`` of the implicit function
    theorem applies to the residual ``g(z) = f(z) − z``, whose ``∂g/∂z = J − I`` absorbs it.
    The row vector ``∂L/∂z* (I − J)^(−1)`` is the adjoint ``gᵀ``: the fixed point of
    ``g = ∂L/∂z* + Jᵀ g``, solved with the caller's solver and its own options, using one
    vector-Jacobian product per iteration through a single stored evaluation of ``f``.
``phantom``
    Phantom gradient (Geng, Zhang, Bai, Wang & Lin, "On Training Implicit Models",
    NeurIPS 2021, arXiv:2111.05177): backprop through ``k`` damped steps
    ``z ← (1 − λ) z + λ f(z)`` started from the detached ``z*``. With ``k = 1, λ = 1`` this is
    Jacobian-free backpropagation (Fung et al., "JFB: Jacobian-Free Backpropagation for
    Implicit Networks", AAAI 2022, arXiv:2103.12803), i.e. ``(I − J)^(−1)`` replaced by ``I``;
    as ``k → ∞`` it tends to the implicit gradient when the damped map contracts.
``unrolled``
    Plain backprop through ``steps`` iterations of ``f`` from ``z0`` (memory grows with the
    number of steps); a reference for tests, not for training.

All attach functions return a tensor equal in value to the solver's ``z*`` (bit for bit), so
the forward output never depends on the backward mode; only its gradient does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from analogtorch.deq.options import SolverOptions, SolverStats
from analogtorch.deq.residual import is_finite

BackwardMode = Literal["implicit", "phantom", "unrolled"]
BACKWARD_MODES: tuple[str, ...] = get_args(BackwardMode)

FixedPointMap = Callable[[torch.Tensor], torch.Tensor]
Solver = Callable[[FixedPointMap, torch.Tensor, SolverOptions], tuple[torch.Tensor, SolverStats]]


class AdjointNotConvergedWarning(RuntimeWarning):
    """The adjoint fixed point of the implicit backward did not reach its tolerance."""


@dataclass
class BackwardState:
    """Where an implicit backward leaves the stats of its adjoint solve (``None`` until the
    backward has run; overwritten by every later backward through the same graph)."""

    last_backward_stats: SolverStats | None = None


def _value_of(z_star: torch.Tensor, z_graph: torch.Tensor) -> torch.Tensor:
    # z* + (z − z.detach()) is exactly z* in value (the bracket is exactly 0) with the
    # gradient of z; z* − z would be rounded and not quite z* again.
    return z_star + (z_graph - z_graph.detach())


def attach_implicit_grad(
    f: FixedPointMap,
    z_star: torch.Tensor,
    solver: Solver,
    options: SolverOptions,
    *,
    state: BackwardState | None = None,
    strict: bool = False,
) -> torch.Tensor:
    """Return ``z*`` with the implicit-differentiation gradient attached.

    Args:
        f: the map ``z -> f(z)``, closing over the parameters and input that should receive
            gradients; called once here, with gradients enabled.
        z_star: a fixed point of ``f`` from any forward solver, shape (batch, ...); detached.
        solver: ``solve(map, g0, options) -> (g, stats)``, used for the adjoint fixed point.
        options: tolerance, iteration budget, ... of the adjoint solve (not the forward's).
        state: if given, ``state.last_backward_stats`` receives the adjoint solve's stats.
        strict: raise ``RuntimeError`` instead of warning when the adjoint does not converge.

    Non-convergence of the adjoint warns with its residual (:class:`AdjointNotConvergedWarning`)
    and returns the last iterate; a non-finite adjoint raises ``FloatingPointError``.
    Higher-order gradients (``create_graph=True``) are not supported.
    """
    z_star = z_star.detach()
    if not torch.is_grad_enabled():
        return z_star
    z_in = z_star.clone().requires_grad_()
    z_out = f(z_in)
    if z_out.shape != z_star.shape:
        raise ValueError(
            f"f(z*) has shape {tuple(z_out.shape)} but z* has {tuple(z_star.shape)}: "
            "f must map the state onto a state of the same shape"
        )
    in_adjoint_solve = False

    def vjp(v: torch.Tensor) -> torch.Tensor:
        (jtv,) = torch.autograd.grad(z_out, z_in, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if jtv is None else jtv

    def adjoint_hook(grad: torch.Tensor) -> torch.Tensor | None:
        nonlocal in_adjoint_solve
        # The VJPs below differentiate z_out again; whether or not autograd calls this hook
        # on their root gradient, the guard makes such a call a no-op. Unlike removing the
        # hook, it keeps a second backward through a retained graph correct.
        if in_adjoint_solve or grad is None:
            return None
        in_adjoint_solve = True
        try:
            if not torch.any(grad):
                stats = SolverStats(converged=True, reason="converged", residuals=[0.0])
                g = torch.zeros_like(grad)
            else:
                g, stats = solver(lambda v: grad + vjp(v), grad, options)
        finally:
            in_adjoint_solve = False
        if state is not None:
            state.last_backward_stats = stats
        if not is_finite(g):
            raise FloatingPointError(
                f"implicit backward: the adjoint solve produced non-finite values after "
                f"{stats.iterations} iterations (final residual {stats.final_residual:.3e}, "
                f"reason {stats.reason!r}); (I − J)^T is likely singular or the adjoint map "
                "expands: use backward='phantom' or a smaller spectral norm of f"
            )
        if not stats.converged:
            message = (
                f"implicit backward: adjoint solve stopped ({stats.reason}) after "
                f"{stats.iterations} iterations at residual {stats.final_residual:.3e} > "
                f"tol={options.tol} ({options.mode}); the gradient is approximate"
            )
            if strict:
                raise RuntimeError(message)
            warnings.warn(message, AdjointNotConvergedWarning, stacklevel=2)
        return g

    # Hook a view of z_out, not z_out itself: the hook closes over z_out, and a hook on the
    # tensor it references is a cycle through autograd's C++ graph that Python's garbage
    # collector cannot see, so every training step would leak its graph.
    hooked = z_out.view_as(z_out)
    hooked.register_hook(adjoint_hook)
    return _value_of(z_star, hooked)


def attach_phantom_grad(
    f: FixedPointMap, z_star: torch.Tensor, steps: int = 1, damping: float = 1.0
) -> torch.Tensor:
    """Return ``z*`` with the phantom gradient of ``steps`` damped steps
    ``z ← (1 − damping) z + damping f(z)`` from the detached ``z*`` attached
    (``steps=1, damping=1``: Jacobian-free backprop)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: the phantom gradient needs at least 1 step")
    if not 0 < damping <= 1:
        raise ValueError(f"damping={damping}: must be in (0, 1]")
    z_star = z_star.detach()
    if not torch.is_grad_enabled():
        return z_star
    z = z_star
    for _ in range(steps):
        z = f(z) if damping == 1.0 else (1 - damping) * z + damping * f(z)
    return _value_of(z_star, z)


def unrolled(f: FixedPointMap, z0: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` plain differentiable iterations ``z ← f(z)`` from ``z0``; returns the last
    iterate (its own value, not a solver's ``z*``)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: must be >= 1")
    z = z0
    for _ in range(steps):
        z = f(z)
    return z


def attach_backward(
    mode: BackwardMode,
    f: FixedPointMap,
    z_star: torch.Tensor,
    *,
    solver: Solver | None = None,
    options: SolverOptions | None = None,
    state: BackwardState | None = None,
    phantom_steps: int = 1,
    phantom_damping: float = 1.0,
    z0: torch.Tensor | None = None,
    unroll_steps: int | None = None,
) -> torch.Tensor:
    """Attach the gradient of ``mode`` to ``z*``; the value returned is always ``z*``.

    ``implicit`` needs ``solver`` and ``options`` (of the adjoint solve); ``phantom`` uses
    ``phantom_steps`` and ``phantom_damping``; ``unrolled`` differentiates ``unroll_steps``
    iterations from ``z0`` (default ``options.max_iter``) and passes their gradient to ``z*``.
    """
    if mode == "implicit":
        if solver is None or options is None:
            raise ValueError("mode='implicit' needs solver= and options= for the adjoint solve")
        return attach_implicit_grad(f, z_star, solver, options, state=state)
    if mode == "phantom":
        return attach_phantom_grad(f, z_star, steps=phantom_steps, damping=phantom_damping)
    if mode == "unrolled":
        if z0 is None:
            raise ValueError("mode='unrolled' needs z0=, the start of the unrolled iteration")
        if unroll_steps is None:
            if options is None:
                raise ValueError("mode='unrolled' needs unroll_steps= or options= (max_iter)")
            unroll_steps = options.max_iter
        z_star = z_star.detach()
        if not torch.is_grad_enabled():
            return z_star
        return _value_of(z_star, unrolled(f, z0, unroll_steps))
    raise ValueError(f"mode={mode!r}: use one of {BACKWARD_MODES}")
