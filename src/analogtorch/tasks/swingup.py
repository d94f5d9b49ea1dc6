"""Pendulum swing-up by imitation with DAgger: a smooth expert, a saturation-aware loss, the
aggregation loop and the seeded start sets of the closed-loop score (:mod:`.pendulum`).

Behaviour cloning of the switching expert of :mod:`.pendulum` fails in closed loop (0 %
success): its torque jumps with ``sgn θ̇`` and at the catch boundary, a smooth network misfits
exactly where the catch is decided, and the errors compound off the expert's state
distribution. Here the expert is a smooth function of the observation, the network is
trained on its *unclipped* command with a loss that is zero wherever clipping makes the two
torques equal, and DAgger (Ross, Gordon & Bagnell, AISTATS 2011, with ``β_i = 1[i = 0]``)
labels the states the learned policy itself visits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from analogtorch.tasks.base import check_float, check_int, generator
from analogtorch.tasks.pendulum import PendulumParams, Policy, closed_loop, lqr_gain, observation

# The closed-loop score of the physics-tasks study: 15 s at 50 Hz.
SWINGUP_DT = 0.02  # s
SWINGUP_STEPS = 750
START_SETS = ("hanging", "uniform")
Fit = Callable[[Tensor, Tensor, int], None]


@dataclass(frozen=True)
class SmoothSwingUp:
    """Swing-up expert whose command is an analytic function of ``(cos θ, sin θ, θ̇)``.

    With ``E = ½ m l² θ̇² + m g l (1 − cos θ)`` (J), ``sin φ = −sin θ`` (φ = θ − π) and the
    LQR gain ``(k_φ, k_ω)`` of :func:`~.pendulum.lqr_gain`::

        u_pump  = k_E (E_top − E) θ̇              (dE/dt = k_E (E_top − E) θ̇² − b m l² θ̇²)
        u_catch = −k_φ sin φ − k_ω θ̇
        w       = exp(−(1 + cos θ) / σ²)          (≈ exp(−φ² / 2σ²) near the top)
        v       = w u_catch + (1 − w) u_pump,     u = clip(v, ±u_max)  (N·m)

    ``energy_gain`` k_E in s/rad (N·m per J·rad/s), ``catch_width`` σ in rad.
    """

    params: PendulumParams = field(default_factory=PendulumParams)
    energy_gain: float = 0.3
    catch_width: float = 0.45

    def __post_init__(self) -> None:
        check_float("energy_gain", self.energy_gain)
        check_float("catch_width", self.catch_width)

    def command(self, obs: Tensor) -> Tensor:
        """The unclipped torque ``v`` (N·m, float64) for observations (..., 3)."""
        cos, sin, omega = obs.double().unbind(-1)
        p = self.params
        energy = 0.5 * p.inertia * omega**2 + p.mass * p.gravity * p.length * (1.0 - cos)
        pump = self.energy_gain * (p.top_energy - energy) * omega
        k_phi, k_omega = lqr_gain(p)
        catch = k_phi * sin - k_omega * omega
        weight = torch.exp(-(1.0 + cos) / self.catch_width**2)
        return weight * catch + (1.0 - weight) * pump

    def __call__(self, obs: Tensor) -> Tensor:
        """The applied torque ``clip(v, ±u_max)`` (N·m): the expert as a :data:`Policy`."""
        u_max = self.params.max_torque
        return self.command(obs).clamp(-u_max, u_max)


def saturated_torque_loss(pred: Tensor, command: Tensor, max_torque: float) -> Tensor:
    """``mean dist(ŷ, I(v))²`` (N·m)²: zero wherever ``clip(ŷ) = clip(v)``.

    ``I(v) = {v}`` for ``|v| < u_max``, ``[u_max, ∞)`` for ``v ≥ u_max`` and
    ``(−∞, −u_max]`` for ``v ≤ −u_max``: a saturated command only asks the prediction to
    saturate the same way, so the network spends no capacity on torques the motor clips.
    """
    command = command.reshape(pred.shape).to(pred.dtype)
    clipped, inf = command.clamp(-max_torque, max_torque), torch.full_like(command, math.inf)
    low = torch.where(command <= -max_torque, -inf, clipped)
    high = torch.where(command >= max_torque, inf, clipped)
    return (pred - torch.minimum(torch.maximum(pred, low), high)).square().mean()


def swingup_starts(count: int, kind: str, gen: torch.Generator) -> Tensor:
    """Initial states (count, 2) = (θ rad, θ̇ rad/s), float64.

    ``"hanging"``: θ, θ̇ ~ N(0, 0.1²) (the physics-tasks score); ``"uniform"``:
    θ ~ U(−π, π), θ̇ ~ U(−2, 2).
    """
    count = check_int("count", count)
    if kind == "hanging":
        return 0.1 * torch.randn(count, 2, generator=gen, dtype=torch.float64)
    if kind == "uniform":
        unit = 2.0 * torch.rand(count, 2, generator=gen, dtype=torch.float64) - 1.0
        return unit * torch.tensor([math.pi, 2.0], dtype=torch.float64)
    raise ValueError(f"kind={kind!r}: use one of {START_SETS}")


@dataclass(frozen=True)
class DAggerRound:
    """One round: states in the aggregate after it, and the closed-loop success rate and
    cost of the rollouts of the policy it trained."""

    round: int
    states: int
    success_rate: float
    cost: float


def dagger(
    fit: Fit,
    policy: Callable[[int], AbstractContextManager[Policy]],
    expert: SmoothSwingUp,
    *,
    rounds: int = 5,
    rollouts: int = 64,
    samples: int = 2048,
    steps: int = SWINGUP_STEPS,
    dt: float = SWINGUP_DT,
    seed: int = 0,
) -> tuple[Tensor, list[DAggerRound]]:
    """DAgger: ``D_0`` = states of the expert's rollouts; then ``rounds`` times: ``fit(x, v,
    k)`` on ``D`` (observations (N, 3) float32, unclipped expert commands (N, 1)), roll the
    trained policy out from ``rollouts`` fresh starts (half of each start set), add
    ``samples`` of the visited states to ``D``. ``policy(k)`` is a context manager giving the
    :data:`Policy` of round ``k`` (e.g. the model deployed on another chip each round).
    Returns the aggregated states (N, 2) and the rounds."""
    rounds, rollouts = check_int("rounds", rounds), check_int("rollouts", rollouts)
    samples = check_int("samples", samples)
    gen = generator(seed)

    def visited(actor: Policy) -> tuple[Tensor, dict[str, object]]:
        half = [rollouts // 2, rollouts - rollouts // 2]
        parts = zip(half, START_SETS, strict=True)
        x0 = torch.cat([swingup_starts(n, kind, gen) for n, kind in parts if n])
        result = closed_loop(actor, expert.params, x0, steps, dt)
        states = result["trajectory"][:-1].reshape(-1, 2)
        return states[torch.randperm(len(states), generator=gen)[:samples]], result

    states, _ = visited(expert)
    history = []
    for k in range(rounds):
        obs = observation(states)
        fit(obs.float(), expert.command(obs).unsqueeze(-1).float(), k)
        with policy(k) as actor:
            new, result = visited(actor)
        states = torch.cat((states, new))
        history.append(DAggerRound(k, len(states), result["success_rate"], result["cost"]))
    return states, history
