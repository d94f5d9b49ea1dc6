"""Pendulum swing-up by DAgger (``tasks/swingup.py``) and its closed-loop score."""

import contextlib
import math

import pytest
import torch

from analogtorch.deq.study_config import validate_deq
from analogtorch.tasks.pendulum import (
    PendulumParams,
    closed_loop,
    held_upright,
    lqr_gain,
    observation,
    pendulum_step,
)
from analogtorch.tasks.swingup import (
    SmoothSwingUp,
    dagger,
    saturated_torque_loss,
    swingup_starts,
)

M, L, G = 1.0, 1.0, 9.81


def mechanical_energy(state: torch.Tensor) -> torch.Tensor:
    """``½ m l² θ̇² + m g l (1 − cos θ)`` (J), written out here, not the module's."""
    return 0.5 * M * L**2 * state[..., 1] ** 2 + M * G * L * (1.0 - torch.cos(state[..., 0]))


def test_free_undamped_pendulum_conserves_energy_and_matches_small_angle_solution():
    params = PendulumParams(damping=0.0)
    state = torch.tensor([[0.05, 0.0], [2.5, 1.0]], dtype=torch.float64)
    start_energy = mechanical_energy(state)
    dt, steps = 0.01, 500
    for _ in range(steps):
        state = pendulum_step(state, torch.zeros(2), params, dt)
    torch.testing.assert_close(mechanical_energy(state), start_energy, rtol=1e-6, atol=0)
    # θ(t) = θ0 cos(√(g/l) t) for a small swing (error O(θ0³)).
    expected = 0.05 * math.cos(math.sqrt(G / L) * dt * steps)
    assert state[0, 0].item() == pytest.approx(expected, abs=2e-4)


def test_smooth_expert_swings_up_from_bottom_to_the_upright_energy():
    expert = SmoothSwingUp()
    x0 = torch.tensor([[0.05, 0.0], [-0.02, 0.1]], dtype=torch.float64)
    result = closed_loop(expert, expert.params, x0, 750, 0.02, obs_dtype=torch.float64)
    final = result["trajectory"][-1]
    top = M * G * L * (1.0 - math.cos(math.pi))
    torch.testing.assert_close(
        mechanical_energy(final), torch.full((2,), top, dtype=torch.float64), rtol=0.02, atol=0
    )
    assert torch.cos(final[:, 0]).max() < -0.99  # upright
    assert result["success"].all()
    assert result["torque"].abs().max() <= expert.params.max_torque


def test_smooth_expert_is_the_lqr_at_the_top_and_pumps_energy_at_the_bottom():
    expert = SmoothSwingUp()
    k_phi, k_omega = lqr_gain(expert.params)
    near_top = torch.tensor([[math.pi + 0.01, 0.02]], dtype=torch.float64)
    lqr = -k_phi * 0.01 - k_omega * 0.02
    assert expert.command(observation(near_top)).item() == pytest.approx(lqr, rel=1e-3)
    bottom = torch.tensor([[0.0, 0.5]], dtype=torch.float64)  # E < E_top, moving: push along
    expected = 0.3 * (2 * M * G * L - 0.5 * 0.5**2) * 0.5
    assert expert.command(observation(bottom)).item() == pytest.approx(expected, rel=1e-3)


def test_saturated_loss_is_zero_exactly_where_clipped_torques_agree():
    pred = torch.tensor([3.0, 1.0, -3.0, 0.5, -2.5, -1.0])
    command = torch.tensor([5.0, 5.0, 5.0, 0.2, -9.0, -9.0])
    per_sample = [0.0, (2.0 - 1.0) ** 2, (2.0 + 3.0) ** 2, 0.3**2, 0.0, (-1.0 + 2.0) ** 2]
    expected = torch.tensor(per_sample).mean()
    torch.testing.assert_close(saturated_torque_loss(pred, command, 2.0), expected)


def test_held_upright_counts_success_on_hand_built_trajectories():
    steps = 10  # the last ⌈0.2 · 10⌉ = 2 states count
    up = torch.tensor([math.pi, 0.0], dtype=torch.float64)
    down = torch.zeros(2, dtype=torch.float64)
    runs = torch.stack([down] * (steps + 1))[:, None].repeat(1, 5, 1)
    runs[-2:, 0] = up  # caught in time
    runs[-1:, 1] = up  # only the very last state: not held
    runs[-2:, 2] = up + torch.tensor([0.0, 1.5])  # upright but too fast
    runs[-2:, 3] = torch.tensor([-math.pi + 0.1, -0.5])  # upright from the other side
    runs[-2:, 4] = torch.tensor([math.pi + 0.25, 0.0])  # outside 0.2 rad
    assert held_upright(runs).tolist() == [True, False, False, True, False]


def test_dagger_aggregates_the_states_the_policy_visits_with_expert_labels():
    expert = SmoothSwingUp()
    seen, fits = [], []

    def fit(x, v, k):
        fits.append((len(x), k))
        torch.testing.assert_close(v.squeeze(-1), expert.command(x).float())

    def policy(obs):
        seen.append(obs.double())
        return torch.zeros(len(obs))  # never swings up: it visits only low-energy states

    states, rounds = dagger(
        fit,
        lambda k: contextlib.nullcontext(policy),
        expert,
        rounds=2,
        rollouts=4,
        samples=50,
        steps=40,
    )
    assert [n for n, _ in fits] == [50, 100] and [k for _, k in fits] == [0, 1]
    assert [r.states for r in rounds] == [100, 150] and len(states) == 150
    visited = torch.cat(seen)  # float32 observations of float64 states
    added = observation(states[50:])
    distance = torch.cdist(added, visited).min(dim=1).values
    assert distance.max() < 1e-6
    assert all(r.success_rate == 0.0 for r in rounds)


def test_swingup_starts_are_seeded_and_in_range():
    a = swingup_starts(64, "uniform", torch.Generator().manual_seed(1))
    b = swingup_starts(64, "uniform", torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a[:, 0].abs().max() <= math.pi and a[:, 1].abs().max() <= 2.0
    with pytest.raises(ValueError, match="kind='upright'"):
        swingup_starts(4, "upright", torch.Generator())


def test_swingup_config_keys_are_omitted_when_unset():
    plain = validate_deq({"name": "x", "kind": "physics", "tasks": ["linear"]}, "test")
    assert "dagger" not in plain["train"] and "starts" not in plain["eval"]
    swingup = validate_deq(
        {"name": "x", "kind": "swingup", "train": {"dagger": {}}, "eval": {"starts": 8}}, "test"
    )
    assert swingup["train"]["dagger"]["rounds"] == 5 and swingup["eval"]["starts"] == 8
