"""Lorenz-63 flow map and the batched classical Runge–Kutta integrator shared by the tasks.

Lorenz-63 (dimensionless state and time):

    ẋ = σ (y − x),    ẏ = x (ρ − z) − y,    ż = x y − β z,    σ = 10, ρ = 28, β = 8/3.

The task maps a state on the attractor to the state ``horizon`` time units later (the flow map
``φ_h``), both normalised per coordinate by the attractor's mean and standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from analogtorch.tasks.base import (
    TaskData,
    check_dtype,
    check_float,
    check_int,
    generator,
    register_task,
)

SIGMA = 10.0
RHO = 28.0
BETA = 8.0 / 3.0
# Box the initial states are drawn from before the burn-in (it contains the attractor).
_START_LOW = (-20.0, -25.0, 0.0)
_START_HIGH = (20.0, 25.0, 50.0)
_STAT_SNAPSHOTS = 20


def lorenz_rhs(state: Tensor, sigma: float = SIGMA, rho: float = RHO, beta: float = BETA) -> Tensor:
    """Time derivative of Lorenz-63 states ``state`` (..., 3) = (x, y, z); same shape out."""
    x, y, z = state.unbind(-1)
    return torch.stack((sigma * (y - x), x * (rho - z) - y, x * y - beta * z), dim=-1)


def rk4_integrate(
    rhs: Callable[..., Any],
    state: Any,
    dt: float,
    steps: int,
    *,
    trajectory: bool = False,
    t0: float | None = None,
) -> Any:
    """Integrate ``ṡ = rhs(s)`` with ``steps`` classical Runge–Kutta (RK4) steps of ``dt``.

    ``state`` is a batched tensor (integrate in float64 for accuracy) or anything closed under
    ``+`` and scalar ``*`` (a Python float works). The local error is O(dt⁵), the global error
    O(dt⁴). With ``t0`` given the system is non-autonomous: ``rhs(t, s)`` is called with the
    stage times ``t, t + dt/2, t + dt/2, t + dt`` starting from ``t = t0``. Returns the final
    state, or with ``trajectory=True`` the stacked states (steps + 1, *state.shape) including the
    initial one. ``rhs`` must not modify its argument.
    """
    check_float("dt", dt)
    check_int("steps", steps, minimum=0)
    f = (lambda _t, s: rhs(s)) if t0 is None else rhs
    t = 0.0 if t0 is None else float(t0)
    half, sixth = 0.5 * dt, dt / 6.0
    states = [state] if trajectory else []
    for _ in range(steps):
        k1 = f(t, state)
        k2 = f(t + half, state + half * k1)
        k3 = f(t + half, state + half * k2)
        k4 = f(t + dt, state + dt * k3)
        state = state + sixth * (k1 + 2.0 * (k2 + k3) + k4)
        t += dt
        if trajectory:
            states.append(state)
    return torch.stack(states) if trajectory else state


def steps_for(name: str, duration: float, dt: float) -> int:
    """Number of steps of ``dt`` in ``duration``; raises unless it is (close to) an integer."""
    steps = round(duration / dt)
    if steps < 1 or not math.isclose(steps * dt, duration, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(
            f"{name}={duration} must be a positive integer multiple of dt={dt} "
            f"(got {duration / dt:.6g} steps)"
        )
    return steps


def attractor_samples(
    n: int, gen: torch.Generator, burn_in: float = 10.0, dt: float = 0.01
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` float64 states on the Lorenz attractor and its per-coordinate mean and std.

    ``n`` starts drawn uniformly in a box around the attractor are integrated for ``burn_in``
    time units with RK4 of step ``dt`` (the transient dies out at the rate of the most negative
    Lyapunov exponent, ≈ 14.6 per time unit). Mean and std are taken over 20 snapshots of all
    trajectories spread over the second half of the burn-in.
    """
    low = torch.tensor(_START_LOW, dtype=torch.float64)
    high = torch.tensor(_START_HIGH, dtype=torch.float64)
    state = low + (high - low) * torch.rand(n, 3, generator=gen, dtype=torch.float64)
    total = steps_for("burn_in", burn_in, dt)
    chunk = max(1, total // (2 * _STAT_SNAPSHOTS))
    state = rk4_integrate(lorenz_rhs, state, dt, total - chunk * _STAT_SNAPSHOTS)
    snapshots = []
    for _ in range(_STAT_SNAPSHOTS):
        state = rk4_integrate(lorenz_rhs, state, dt, chunk)
        snapshots.append(state)
    cloud = torch.cat(snapshots)
    return state, cloud.mean(dim=0), cloud.std(dim=0)


@register_task("lorenz")
def lorenz_flow(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    horizon: float = 0.1,
    dt: float = 0.001,
    *,
    burn_in: float = 10.0,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``s(t) ↦ s(t + horizon)`` on the Lorenz-63 attractor, normalised.

    Inputs are attractor states (see :func:`attractor_samples`); targets come from RK4 with
    step ``dt`` in float64. Both are mapped by ``(s − mean) / std`` with the attractor's
    per-coordinate statistics, stored in ``info`` ("mean", "std") with the constants.
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    horizon, dt = check_float("horizon", horizon), check_float("dt", dt)
    burn_in = check_float("burn_in", burn_in)
    dtype = check_dtype(dtype)
    steps = steps_for("horizon", horizon, dt)
    start, mean, std = attractor_samples(n_train + n_test, generator(seed), burn_in=burn_in)
    end = rk4_integrate(lorenz_rhs, start, dt, steps)
    x = ((start - mean) / std).to(dtype)
    y = ((end - mean) / std).to(dtype)
    info: dict[str, object] = {
        "sigma": SIGMA,
        "rho": RHO,
        "beta": BETA,
        "horizon": horizon,
        "dt": dt,
        "steps": steps,
        "burn_in": burn_in,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "equation": "Lorenz-63 flow map; x = (s(t)-mean)/std, y = (s(t+horizon)-mean)/std",
    }
    return TaskData.regression("lorenz", x, y, n_train, info)
