"""Torque-limited damped pendulum: swing-up expert, imitation data and closed-loop evaluation.

Dynamics (SI units; θ = 0 hanging down, θ = π upright):

    θ̈ = −(g/l) sin θ − b θ̇ + u / (m l²),        |u| ≤ u_max,

with m = 1 kg, l = 1 m, g = 9.81 m/s², b = 0.1 1/s, u_max = 2 N·m by default. The gravity torque
``m g l = 9.81 N·m`` exceeds ``u_max``, so the pendulum cannot be lifted directly: the expert
pumps energy ``E = ½ m l² θ̇² + m g l (1 − cos θ)`` (J) towards ``E_top = 2 m g l`` using
``dE/dt = u θ̇ − b m l² θ̇²``, then an LQR controller of the upright linearisation holds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.linalg import solve_continuous_are
from torch import Tensor

from analogtorch.tasks.base import (
    TaskData,
    check_dtype,
    check_float,
    check_int,
    generator,
    register_task,
)
from analogtorch.tasks.lorenz import rk4_integrate, steps_for

Policy = Callable[[Tensor], Tensor]
# Quadratic closed-loop cost weights: angle to top (rad²), speed ((rad/s)²), torque ((N·m)²).
COST_WEIGHTS = (1.0, 0.1, 0.001)
SUCCESS_ANGLE = 0.2  # rad
SUCCESS_SPEED = 1.0  # rad/s
SUCCESS_TAIL = 0.2  # fraction of the horizon checked at the end


@dataclass(frozen=True)
class PendulumParams:
    """Physical constants: mass (kg), length (m), gravity (m/s²), damping b (1/s), u_max (N·m)."""

    mass: float = 1.0
    length: float = 1.0
    gravity: float = 9.81
    damping: float = 0.1
    max_torque: float = 2.0

    def __post_init__(self) -> None:
        for name in ("mass", "length", "gravity", "max_torque"):
            check_float(name, getattr(self, name))
        check_float("damping", self.damping, strict=False)

    @property
    def inertia(self) -> float:
        """Moment of inertia ``m l²`` (kg·m²)."""
        return self.mass * self.length**2

    @property
    def top_energy(self) -> float:
        """Energy of the upright rest state, ``2 m g l`` (J)."""
        return 2.0 * self.mass * self.gravity * self.length


def pendulum_rhs(state: Tensor, torque: Tensor, params: PendulumParams) -> Tensor:
    """``(θ̇, θ̈)`` for states (batch, 2) = (θ, θ̇) under torques (batch,) (no clipping here)."""
    theta, omega = state.unbind(-1)
    p = params
    accel = -(p.gravity / p.length) * torch.sin(theta) - p.damping * omega + torque / p.inertia
    return torch.stack((omega, accel), dim=-1)


def pendulum_step(state: Tensor, torque: Tensor, params: PendulumParams, dt: float) -> Tensor:
    """One RK4 step of ``dt`` seconds with the torque held constant and clipped to ±u_max."""
    u = torch.as_tensor(torque, dtype=state.dtype).clamp(-params.max_torque, params.max_torque)
    return rk4_integrate(lambda s: pendulum_rhs(s, u, params), state, dt, 1)


def energy(state: Tensor, params: PendulumParams) -> Tensor:
    """Mechanical energy ``½ m l² θ̇² + m g l (1 − cos θ)`` (J) of states (..., 2)."""
    theta, omega = state.unbind(-1)
    p = params
    return 0.5 * p.inertia * omega**2 + p.mass * p.gravity * p.length * (1.0 - torch.cos(theta))


def angle_to_top(theta: Tensor) -> Tensor:
    """``θ − π`` wrapped to (−π, π] (rad): 0 when upright."""
    return torch.atan2(-torch.sin(theta), -torch.cos(theta))


def observation(state: Tensor) -> Tensor:
    """Features ``(cos θ, sin θ, θ̇)`` of states (..., 2): continuous in the angle."""
    theta, omega = state.unbind(-1)
    return torch.stack((torch.cos(theta), torch.sin(theta), omega), dim=-1)


@lru_cache(maxsize=32)
def lqr_gain(
    params: PendulumParams, q_angle: float = 1.0, q_speed: float = 0.1, r: float = 0.05
) -> tuple[float, float]:
    """LQR gain ``(k_φ, k_ω)`` of the upright linearisation, ``u = −k_φ φ − k_ω θ̇``.

    Linearisation at θ = π with ``φ = θ − π``: ``φ̈ = (g/l) φ − b φ̇ + u/(m l²)``; minimises
    ``∫ q_angle φ² + q_speed φ̇² + r u² dt`` (continuous algebraic Riccati equation).
    """
    p = params
    a = np.array([[0.0, 1.0], [p.gravity / p.length, -p.damping]])
    b = np.array([[0.0], [1.0 / p.inertia]])
    q, rr = np.diag([q_angle, q_speed]), np.array([[r]])
    riccati = solve_continuous_are(a, b, q, rr)
    gain = (b.T @ riccati / r).ravel()
    return float(gain[0]), float(gain[1])


def expert_torque(
    state: Tensor,
    params: PendulumParams,
    *,
    energy_gain: float = 2.0,
    switch_angle: float = 0.5,
) -> Tensor:
    """Swing-up expert torque (N·m) for states (batch, 2), clipped to ±u_max.

    Far from the top: energy pumping ``u = k_E (E_top − E) sgn(θ̇)`` with ``sgn(0) = +1`` (so
    the hanging rest state is kicked), which makes ``dE/dt = |u| |θ̇| sgn(E_top − E) − b m l² θ̇²``
    drive ``E`` to ``E_top``. Where ``|φ| < switch_angle`` and the LQR torque is within 2·u_max:
    ``u = −k_φ φ − k_ω θ̇`` (:func:`lqr_gain`).
    """
    theta, omega = state.unbind(-1)
    sign = torch.where(omega >= 0, 1.0, -1.0).to(state.dtype)
    pump = energy_gain * (params.top_energy - energy(state, params)) * sign
    phi = angle_to_top(theta)
    k_phi, k_omega = lqr_gain(params)
    stabilise = -k_phi * phi - k_omega * omega
    near = (phi.abs() < switch_angle) & (stabilise.abs() < 2.0 * params.max_torque)
    torque = torch.where(near, stabilise, pump)
    return torque.clamp(-params.max_torque, params.max_torque)


def expert_policy(params: PendulumParams, **kwargs: float) -> Policy:
    """The expert as a policy of observations ``(cos θ, sin θ, θ̇)`` (see :func:`expert_torque`)."""

    def policy(obs: Tensor) -> Tensor:
        obs64 = obs.double()
        theta = torch.atan2(obs64[..., 1], obs64[..., 0])
        return expert_torque(torch.stack((theta, obs64[..., 2]), dim=-1), params, **kwargs)

    return policy


def closed_loop(
    policy: Policy,
    params: PendulumParams,
    x0: Tensor,
    steps: int,
    dt: float = 0.02,
    *,
    obs_dtype: torch.dtype = torch.float32,
) -> dict[str, object]:
    """Run ``policy(observation) -> torque`` in closed loop from states ``x0`` (batch, 2).

    The torque is computed from :func:`observation` (cast to ``obs_dtype``), clipped to ±u_max
    and held for ``dt`` s (RK4, float64). Returns ``trajectory`` (steps + 1, batch, 2),
    ``torque`` (steps, batch), ``cost`` = mean over runs of
    ``Σ (φ² + 0.1 θ̇² + 0.001 u²) dt / T`` with ``T = steps·dt`` (``cost_per_run`` per run),
    ``success`` per run (|φ| < 0.2 rad and |θ̇| < 1 rad/s at every step of the last 20 % of the
    horizon) and ``success_rate`` (fraction of runs).
    """
    steps, dt = check_int("steps", steps), check_float("dt", dt)
    if x0.ndim != 2 or x0.shape[1] != 2:
        raise ValueError(f"x0 must be (batch, 2) = (θ, θ̇); got shape {tuple(x0.shape)}")
    state = x0.detach().double()
    batch = state.shape[0]
    states, torques = [state], []
    with torch.no_grad():
        for _ in range(steps):
            u = torch.as_tensor(policy(observation(state).to(obs_dtype)))
            if u.numel() != batch:
                raise ValueError(f"policy returned {tuple(u.shape)}; expected {batch} torques")
            u = u.reshape(batch).double().clamp(-params.max_torque, params.max_torque)
            torques.append(u)
            state = pendulum_step(state, u, params, dt)
            states.append(state)
    trajectory, torque = torch.stack(states), torch.stack(torques)
    phi, omega = angle_to_top(trajectory[..., 0]), trajectory[..., 1]
    w_angle, w_speed, w_torque = COST_WEIGHTS
    rate = w_angle * phi[:-1] ** 2 + w_speed * omega[:-1] ** 2 + w_torque * torque**2
    cost_per_run = rate.mean(dim=0)  # Σ rate·dt / (steps·dt)
    success = held_upright(trajectory)
    return {
        "trajectory": trajectory,
        "torque": torque,
        "cost": float(cost_per_run.mean()),
        "cost_per_run": cost_per_run,
        "success": success,
        "success_rate": float(success.double().mean()),
    }


def held_upright(trajectory: Tensor) -> Tensor:
    """Swing-up success per run of a trajectory (steps + 1, batch, 2) of ``(θ, θ̇)``: ``|φ| <
    0.2`` rad and ``|θ̇| < 1`` rad/s at each of the last ``max(1, ⌈0.2 · steps⌉)`` states."""
    phi, omega = angle_to_top(trajectory[..., 0]), trajectory[..., 1]
    tail = max(1, math.ceil(SUCCESS_TAIL * (trajectory.shape[0] - 1)))
    held = (phi[-tail:].abs() < SUCCESS_ANGLE) & (omega[-tail:].abs() < SUCCESS_SPEED)
    return held.all(dim=0)


def _random_states(count: int, gen: torch.Generator, max_speed: float) -> Tensor:
    theta = math.pi * (2.0 * torch.rand(count, generator=gen, dtype=torch.float64) - 1.0)
    omega = max_speed * (2.0 * torch.rand(count, generator=gen, dtype=torch.float64) - 1.0)
    return torch.stack((theta, omega), dim=-1)


def _expert_states(
    counts: tuple[int, int], gen: torch.Generator, params: PendulumParams, dt: float, steps: int
) -> tuple[Tensor, Tensor]:
    """States visited by expert rollouts; train and test come from disjoint rollouts."""
    per_rollout = max(1, min(32, steps))
    rollouts = [max(1, math.ceil(c / per_rollout)) for c in counts]
    x0 = _random_states(sum(rollouts), gen, max_speed=2.0)
    traj = closed_loop(expert_policy(params), params, x0, steps, dt, obs_dtype=torch.float64)
    visited = traj["trajectory"][1:].transpose(0, 1)  # (rollouts, steps, 2)
    picks = torch.rand(visited.shape[:2], generator=gen).argsort(dim=1)[:, :per_rollout]
    chosen = torch.gather(visited, 1, picks.unsqueeze(-1).expand(-1, -1, 2))
    train, test = chosen.split(rollouts)
    out = []
    for part, count in zip((train, test), counts, strict=True):
        flat = part.reshape(-1, 2)
        out.append(flat[torch.randperm(flat.shape[0], generator=gen)[:count]])
    return out[0], out[1]


@register_task("pendulum")
def pendulum_imitation(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    *,
    params: PendulumParams | None = None,
    dt: float = 0.02,
    horizon: float = 10.0,
    random_fraction: float = 0.25,
    max_speed: float = 8.0,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``(cos θ, sin θ, θ̇) ↦ u_expert`` (N·m), shape (N, 3) → (N, 1).

    A ``1 − random_fraction`` share of each split are states visited by expert closed-loop
    rollouts (``horizon`` s at step ``dt`` from θ ~ U(−π, π), θ̇ ~ U(−2, 2) rad/s; train and test
    from disjoint rollouts); the rest are uniform random states with ``|θ̇| ≤ max_speed``.
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    dt, horizon = check_float("dt", dt), check_float("horizon", horizon)
    fraction = check_float(
        "random_fraction", random_fraction, high=1.0, strict=False, closed_high=True
    )
    max_speed = check_float("max_speed", max_speed)
    dtype = check_dtype(dtype)
    params = PendulumParams() if params is None else params
    if not isinstance(params, PendulumParams):
        raise TypeError(f"params={params!r} must be a PendulumParams")
    steps = steps_for("horizon", horizon, dt)
    gen = generator(seed)
    n_random = [round(fraction * n) for n in (n_train, n_test)]
    counts = (n_train - n_random[0], n_test - n_random[1])
    expert_train, expert_test = _expert_states(counts, gen, params, dt, steps)
    splits = []
    for visited, extra in zip((expert_train, expert_test), n_random, strict=True):
        states = torch.cat((visited, _random_states(extra, gen, max_speed)))
        states = states[torch.randperm(states.shape[0], generator=gen)]
        u = expert_torque(states, params).unsqueeze(-1)
        splits.append((observation(states).to(dtype), u.to(dtype)))
    (x_train, y_train), (x_test, y_test) = splits
    info: dict[str, object] = {
        "params": asdict(params),
        "dt": dt,
        "horizon": horizon,
        "random_fraction": fraction,
        "max_speed": max_speed,
        "lqr_gain": list(lqr_gain(params)),
        "features": ["cos(theta)", "sin(theta)", "theta_dot"],
        "equation": "theta'' = -(g/l) sin(theta) - b theta' + u/(m l^2), |u| <= u_max",
    }
    return TaskData("pendulum", "regression", x_train, y_train, x_test, y_test, info)
