"""Backward modes of the equilibrium layer: implicit gradients match finite differences and
unrolled backprop; phantom gradients approach them; the DEQ module wires solver and mode.

The problem: ``z* = tanh(W z* + U x + b)``, state dim 6, input dim 4, batch 3, float64, with
W scaled to spectral norm 0.5 (a contraction, so plain iteration converges geometrically).
Loss: ``Σ c ⊙ z*²``. The forward and adjoint solves use the small fixed-point loop below, so
these tests exercise ``backward.py`` against the solver interface alone.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch
from torch import nn

from analogtorch.deq.backward import (
    AdjointNotConvergedWarning,
    BackwardState,
    attach_backward,
    attach_implicit_grad,
    attach_phantom_grad,
    unrolled,
)
from analogtorch.deq.model import DEQ
from analogtorch.deq.options import SolverOptions, SolverStats

DTYPE = torch.float64
STATE_DIM, INPUT_DIM, BATCH = 6, 4, 3
TIGHT = SolverOptions(tol=1e-13, mode="absolute", max_iter=500)


def fixed_point_iteration(f, z0, options: SolverOptions):
    """Damped Picard iteration with the interface of the package's solvers."""
    start = time.perf_counter()
    stats = SolverStats()
    z = z0
    for _ in range(options.max_iter):
        fz = f(z)
        diff = (fz - z).flatten(1).norm(dim=1)
        if options.mode == "relative":
            diff = diff / fz.flatten(1).norm(dim=1).clamp_min(1e-30)
        z = (1 - options.damping) * z + options.damping * fz
        stats.iterations += 1
        stats.residuals.append(float(diff.max()))
        if stats.residuals[-1] < options.tol:
            stats.converged, stats.reason = True, "converged"
            break
    stats.wall_time_s = time.perf_counter() - start
    return z, stats


def _params(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(STATE_DIM, STATE_DIM, generator=gen, dtype=DTYPE)
    return {
        "W": 0.5 * w / torch.linalg.matrix_norm(w, ord=2),
        "U": torch.randn(STATE_DIM, INPUT_DIM, generator=gen, dtype=DTYPE),
        "b": 0.5 * torch.randn(STATE_DIM, generator=gen, dtype=DTYPE),
        "x": torch.randn(BATCH, INPUT_DIM, generator=gen, dtype=DTYPE),
        "c": torch.rand(BATCH, STATE_DIM, generator=gen, dtype=DTYPE) + 0.5,
    }


def _cell(p: dict[str, torch.Tensor]):
    return lambda z: torch.tanh(z @ p["W"].T + p["x"] @ p["U"].T + p["b"])


def _z0() -> torch.Tensor:
    return torch.zeros(BATCH, STATE_DIM, dtype=DTYPE)


def _loss(z: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    return (p["c"] * z**2).sum()


WRT = ("W", "U", "b", "x")


def _grads(mode: str, seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    p = _params(seed)
    for name in WRT:
        p[name].requires_grad_()
    f = _cell(p)
    if mode == "unrolled_direct":
        z = unrolled(f, _z0(), kwargs["steps"])
    else:
        with torch.no_grad():
            z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
        z = attach_backward(mode, f, z_star, solver=fixed_point_iteration, z0=_z0(), **kwargs)
    grads = torch.autograd.grad(_loss(z, p), [p[n] for n in WRT])
    return dict(zip(WRT, grads, strict=True))


def _finite_difference_grads(seed: int = 0, h: float = 1e-6) -> dict[str, torch.Tensor]:
    def loss_at(p):
        z, stats = fixed_point_iteration(_cell(p), _z0(), TIGHT)
        assert stats.converged
        return float(_loss(z, p))

    grads = {}
    with torch.no_grad():
        for name in WRT:
            p = _params(seed)
            g = torch.zeros_like(p[name])
            flat, gflat = p[name].view(-1), g.view(-1)
            for i in range(flat.numel()):
                orig = float(flat[i])
                flat[i] = orig + h
                up = loss_at(p)
                flat[i] = orig - h
                down = loss_at(p)
                flat[i] = orig
                gflat[i] = (up - down) / (2 * h)
            grads[name] = g
    return grads


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([grads[n].reshape(-1) for n in WRT])


def test_implicit_grad_matches_finite_differences():
    implicit = _grads("implicit", options=TIGHT)
    fd = _finite_difference_grads()
    errors = {n: _rel_err(implicit[n], fd[n]) for n in WRT}
    print("implicit vs finite differences, relative error:", errors)
    assert max(errors.values()) < 1e-4, errors


def test_implicit_grad_matches_unrolled_backprop():
    implicit = _grads("implicit", options=TIGHT)
    reference = _grads("unrolled_direct", steps=200)
    errors = {n: _rel_err(implicit[n], reference[n]) for n in WRT}
    print("implicit vs unrolled(200), relative error:", errors)
    assert max(errors.values()) < 1e-4, errors


def test_implicit_grad_passes_gradcheck():
    p = _params()

    def equilibrium(w, u, b, x):
        f = lambda z: torch.tanh(z @ w.T + x @ u.T + b)  # noqa: E731
        with torch.no_grad():
            z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
        return attach_implicit_grad(f, z_star, fixed_point_iteration, TIGHT)

    inputs = tuple(p[n].clone().requires_grad_() for n in WRT)
    assert torch.autograd.gradcheck(equilibrium, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_implicit_grad_value_is_exactly_z_star_and_reports_adjoint_stats():
    p = _params()
    p["W"].requires_grad_()
    f = _cell(p)
    with torch.no_grad():
        z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
    state = BackwardState()
    z = attach_implicit_grad(f, z_star, fixed_point_iteration, TIGHT, state=state)
    assert torch.equal(z, z_star)
    assert state.last_backward_stats is None
    _loss(z, p).backward(retain_graph=True)
    first = p["W"].grad.clone()
    stats = state.last_backward_stats
    assert stats.converged and stats.final_residual < TIGHT.tol and stats.iterations > 1
    # A second backward through the retained graph runs the adjoint hook again.
    p["W"].grad = None
    _loss(z, p).backward()
    torch.testing.assert_close(p["W"].grad, first, rtol=1e-12, atol=0)


def test_adjoint_hook_runs_one_solve_per_backward_despite_its_own_vjps():
    # autograd calls a tensor hook on the root of autograd.grad too, so each VJP inside the
    # hook would re-enter it without the guard.
    p = _params()
    p["W"].requires_grad_()
    f = _cell(p)
    with torch.no_grad():
        z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
    solves = []

    def counting_solver(g, z0, options):
        solves.append(options)
        return fixed_point_iteration(g, z0, options)

    z = attach_implicit_grad(f, z_star, counting_solver, TIGHT)
    _loss(z, p).backward()
    assert len(solves) == 1


def test_phantom_grad_with_many_steps_approaches_implicit_grad():
    implicit = _flat(_grads("implicit", options=TIGHT))
    phantom = _flat(_grads("phantom", phantom_steps=30))
    damped = _flat(_grads("phantom", phantom_steps=30, phantom_damping=0.8))
    for approx in (phantom, damped):
        cosine = float(torch.nn.functional.cosine_similarity(approx, implicit, dim=0))
        assert cosine > 0.99, cosine


def test_one_step_phantom_grad_is_a_descent_direction():
    for seed in range(5):
        implicit = _flat(_grads("implicit", seed=seed, options=TIGHT))
        jacobian_free = _flat(_grads("phantom", seed=seed, phantom_steps=1))
        assert float(jacobian_free @ implicit) > 0, seed


def test_adjoint_non_convergence_warns_with_residual_and_stays_finite():
    p = _params()
    p["W"].requires_grad_()
    f = _cell(p)
    with torch.no_grad():
        z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
    state = BackwardState()
    starved = SolverOptions(tol=1e-14, max_iter=1)
    z = attach_implicit_grad(f, z_star, fixed_point_iteration, starved, state=state)
    with pytest.warns(AdjointNotConvergedWarning, match="residual"):
        _loss(z, p).backward()
    assert torch.isfinite(p["W"].grad).all()
    assert not state.last_backward_stats.converged
    assert state.last_backward_stats.iterations == 1


def test_adjoint_non_convergence_raises_when_strict():
    p = _params()
    p["W"].requires_grad_()
    f = _cell(p)
    with torch.no_grad():
        z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
    z = attach_implicit_grad(
        f, z_star, fixed_point_iteration, SolverOptions(tol=1e-14, max_iter=1), strict=True
    )
    with pytest.raises(RuntimeError, match="adjoint solve stopped"):
        _loss(z, p).backward()


def test_phantom_grad_rejects_bad_steps_and_damping():
    z = _z0()
    with pytest.raises(ValueError, match="steps=0"):
        attach_phantom_grad(torch.tanh, z, steps=0)
    with pytest.raises(ValueError, match=r"damping=1\.5"):
        attach_phantom_grad(torch.tanh, z, damping=1.5)
    with pytest.raises(ValueError, match="mode='adjoint'"):
        attach_backward("adjoint", torch.tanh, z)


class TanhCell(nn.Module):
    """``f(z, x) = tanh(W z + U x + b)`` with W at spectral norm 0.5."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        p = _params(seed)
        self.W = nn.Parameter(p["W"])
        self.U = nn.Parameter(p["U"])
        self.b = nn.Parameter(p["b"])

    def state_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[0], STATE_DIM)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.W.T + x @ self.U.T + self.b)


def _deq(backward: str, **kwargs) -> DEQ:
    return DEQ(
        TanhCell(),
        fixed_point_iteration,
        forward_options=SolverOptions(tol=1e-12, mode="absolute", max_iter=200),
        backward=backward,
        backward_options=SolverOptions(tol=1e-12, mode="absolute", max_iter=200),
        **kwargs,
    )


@pytest.mark.parametrize("backward", ["implicit", "phantom", "unrolled"])
def test_deq_output_is_a_fixed_point_and_gradients_reach_parameters(backward):
    deq = _deq(backward, phantom_steps=5)
    p = _params()
    x = p["x"].clone().requires_grad_()
    z = deq(x)
    residual = (deq.f_module(z, x) - z).norm(dim=1).max()
    assert residual < 1e-11
    stats = deq.last_forward_stats
    assert stats.converged and stats.iterations > 1 and stats.residuals
    _loss(z, p).backward()
    for name, param in [*deq.named_parameters(), ("x", x)]:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    if backward == "implicit":
        assert deq.last_backward_stats.converged
    else:
        assert deq.last_backward_stats is None


def test_deq_modes_agree_with_functional_implicit_grad():
    reference = _grads("implicit", options=TIGHT)
    p = _params()
    for backward in ("implicit", "unrolled"):
        deq = _deq(backward)
        x = p["x"].clone().requires_grad_()
        _loss(deq(x), p).backward()
        got = {"W": deq.f_module.W.grad, "U": deq.f_module.U.grad, "b": deq.f_module.b.grad}
        got["x"] = x.grad
        for name in WRT:
            assert _rel_err(got[name], reference[name]) < 1e-8, (backward, name)


def test_deq_without_grad_returns_detached_z_star_and_no_hook():
    deq = _deq("implicit")
    with torch.no_grad():
        z = deq(_params()["x"])
    assert not z.requires_grad
    assert deq.last_forward_stats.converged


def test_deq_requires_z0_when_module_has_no_state_shape():
    class Cell(nn.Module):
        def forward(self, z, x):
            return torch.tanh(0.5 * z + x)

    deq = DEQ(Cell(), fixed_point_iteration)
    x = torch.randn(2, 3, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="pass z0="):
        deq(x)
    z = deq(x, z0=torch.zeros_like(x))
    assert z.shape == x.shape


def test_deq_rejects_unknown_backward_mode():
    with pytest.raises(ValueError, match="backward='adjoint'"):
        DEQ(TanhCell(), fixed_point_iteration, backward="adjoint")
    with pytest.raises(ValueError, match="phantom_steps=0"):
        DEQ(TanhCell(), fixed_point_iteration, phantom_steps=0)


def test_no_warning_when_adjoint_converges():
    p = _params()
    p["b"].requires_grad_()
    f = _cell(p)
    with torch.no_grad():
        z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
    z = attach_implicit_grad(f, z_star, fixed_point_iteration, TIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _loss(z, p).backward()


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts how often gradients flow through it."""

    calls = 0

    @staticmethod
    def forward(ctx, z):
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        _CountBackward.calls += 1
        return grad


def test_implicit_backward_reuses_one_graph_of_f():
    # f is evaluated once, when the gradient is attached; the adjoint solve then takes one
    # vector-Jacobian product per iteration through that stored graph, and the gradient of
    # the parameters one more.
    p = _params()
    p["W"].requires_grad_()
    calls = 0

    def f(z):
        nonlocal calls
        calls += 1
        return torch.tanh(_CountBackward.apply(z) @ p["W"].T + p["x"] @ p["U"].T + p["b"])

    with torch.no_grad():
        z_star, _ = fixed_point_iteration(f, _z0(), TIGHT)
    calls, _CountBackward.calls = 0, 0
    state = BackwardState()
    z = attach_implicit_grad(f, z_star, fixed_point_iteration, TIGHT, state=state)
    _loss(z, p).backward()
    assert calls == 1
    assert state.last_backward_stats.iterations > 10
    assert _CountBackward.calls == state.last_backward_stats.iterations + 1


def test_implicit_backward_frees_its_graph_after_backward():
    # A hook that closes over the tensor it is registered on is a reference cycle through
    # autograd's C++ graph, invisible to Python's garbage collector: every step would leak.
    import gc
    import weakref

    from analogtorch.deq import DEQ, SolverOptions, anderson

    class Cell(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W = torch.nn.Linear(8, 8, bias=False)
            with torch.no_grad():
                self.W.weight.mul_(0.5 / torch.linalg.matrix_norm(self.W.weight, ord=2))

        def state_shape(self, x: torch.Tensor) -> tuple[int, int]:
            return (x.shape[0], 8)

        def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.W(z) + x)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        cell = Cell()
    deq = DEQ(cell, anderson.solve, forward_options=SolverOptions(tol=1e-5, max_iter=100))
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    alive = weakref.ref(x)
    deq(x).sum().backward()
    del x
    gc.collect()
    assert alive() is None
