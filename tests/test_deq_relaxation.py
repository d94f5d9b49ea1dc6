"""Analog relaxation ``τ dz/dt = −z + f(z, u)``: checked against the exact solution of the
linear Euler recursion, the stationary variance of the noisy recursion, and a fixed-point
solver."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from analogtorch.deq import SOLVERS, SolverOptions
from analogtorch.deq.cores import AnalogCore
from analogtorch.deq.relaxation import continuous_time, relax, relaxation_time_constant
from analogtorch.hardware.chip import Chip
from analogtorch.hardware.profile import HardwareProfile

F64 = torch.float64
IDEAL = HardwareProfile.preset("ideal")
PCM = HardwareProfile.preset("pcm")


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Layers draw their initial weights from the global RNG: make every test reproducible."""
    torch.manual_seed(0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_core(width: int, a: float, profile: HardwareProfile = IDEAL) -> AnalogCore:
    """f(z, u) = a z + u (identity activation, W = a I)."""
    core = AnalogCore(width, profile, activation="identity", contraction=0.8).double()
    with torch.no_grad():
        core.feedback.weight.copy_(a * torch.eye(width, dtype=F64))
    return core


def test_time_constant_is_node_capacitance_over_g_max():
    profile = IDEAL.replace(node_capacitance_farads=2e-12, g_max_siemens=50e-6)
    assert relaxation_time_constant(profile) == pytest.approx(4e-8, rel=1e-12)
    assert relaxation_time_constant(IDEAL) == pytest.approx(1e-12 / 25e-6, rel=1e-12)


def test_noise_free_linear_relaxation_follows_the_exact_euler_solution():
    a, steps, tol = 0.5, 10, 1e-6
    core = _linear_core(3, a)
    u = torch.tensor([[0.1, -0.2, 0.3], [1.0, 0.5, -0.7]], dtype=F64)
    z, stats = relax(core, u, options=SolverOptions(tol=tol), steps_per_tau=steps, noise=False)

    alpha = 1.0 / steps
    rho = 1.0 - alpha * (1.0 - a)
    z_star = u / (1.0 - a)

    # relative change over window m (ends at k = m·steps) of z_k = z*(1 − ρ^k)
    def change(m: int) -> float:
        return rho ** ((m - 1) * steps) * (1 - rho**steps) / (1 - rho ** (m * steps))

    m_settle = next(m for m in range(1, 10_000) if change(m) < tol)
    assert change(m_settle) < 0.9 * tol < change(m_settle - 1)  # not a marginal crossing

    tau = relaxation_time_constant(IDEAL)
    assert stats.settled and stats.reason == "converged"
    assert stats.tau_s == pytest.approx(tau, rel=1e-12)
    assert stats.dt_s == pytest.approx(tau / steps, rel=1e-12)
    assert stats.steps == m_settle * steps
    assert stats.settling_time_s == pytest.approx(m_settle * tau, rel=1e-12)
    assert stats.duration_s == pytest.approx(m_settle * tau, rel=1e-12)
    expected_changes = [change(m) for m in range(1, m_settle + 1)]
    assert stats.changes == pytest.approx(expected_changes, rel=1e-8)

    k = m_settle * steps
    torch.testing.assert_close(z, z_star * (1 - rho**k), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(z, z_star, rtol=10 * tol, atol=0)


def _stationary_std(a: float, sigma: float, z_star: float, steps: int, profile) -> float:
    """Std of z_{k+1} = z_k + α(−(1−a) z_k + u + a σ_eff z_k ξ_k), ξ ~ N(0, 1), with the
    read noise white over t_read: σ_eff = σ √(t_read / dt), dt = τ / steps.

    Var recursion V' = ρ² V + c² (V + m²), c = α a σ_eff, ρ = 1 − α(1 − a), at its fixed point.
    """
    alpha = 1.0 / steps
    dt = relaxation_time_constant(profile) / steps
    c = alpha * a * sigma * math.sqrt(profile.t_read_seconds / dt)
    rho = 1.0 - alpha * (1.0 - a)
    return math.sqrt(c * c * z_star**2 / (1 - rho * rho - c * c))


@pytest.mark.parametrize("steps", [10, 40])
def test_noisy_relaxation_stops_at_the_noise_floor_with_the_stationary_spread(steps):
    a, sigma, u0 = 0.5, 0.05, 0.3
    profile = IDEAL.replace(read_noise_std=sigma)
    core = _linear_core(1, a, profile)
    u = torch.full((400, 1), u0, dtype=F64)
    z, stats = relax(core, u, options=SolverOptions(tol=1e-6), steps_per_tau=steps, noise=True)

    z_star = u0 / (1 - a)
    std = _stationary_std(a, sigma, z_star, steps, profile)
    # the continuous-time (Ornstein–Uhlenbeck) limit: std = a σ z* √(t_read / (2 τ (1 − a)))
    tau = relaxation_time_constant(profile)
    ou = a * sigma * z_star * math.sqrt(profile.t_read_seconds / (2 * tau * (1 - a)))
    assert std == pytest.approx(ou, rel=0.1)

    assert stats.reason == "noise floor"
    assert not stats.settled
    assert stats.steps < math.ceil(200.0) * steps  # stopped well before max_tau
    assert stats.settling_time_s == pytest.approx(stats.duration_s)
    assert float(z.std()) == pytest.approx(std, rel=0.2)
    # the noise is zero-mean and the map linear: E z_k is the noise-free z*(1 − ρ^k)
    rho = 1.0 - (1.0 - a) / steps
    mean = z_star * (1 - rho**stats.steps)
    assert abs(float(z.mean()) - mean) < 4 * std / math.sqrt(len(z))
    assert float((z - z_star).abs().max()) < 6 * std


def test_relaxation_agrees_with_the_anderson_fixed_point():
    core = AnalogCore(8, IDEAL, activation="tanh", contraction=0.8).double()
    with torch.no_grad():
        core.feedback.weight.copy_(2.0 * torch.randn(8, 8, generator=_gen(1), dtype=F64))
    core.project_()
    u = torch.randn(4, 8, generator=_gen(2), dtype=F64)
    z_relax, stats = relax(core, u, options=SolverOptions(tol=1e-10), noise=False)
    assert stats.settled
    opts = SolverOptions(tol=1e-12, mode="absolute", max_iter=200)
    with torch.no_grad():
        z_solve, solve_stats = SOLVERS["anderson"](
            lambda z: core(z, u), torch.zeros(4, 8, dtype=F64), opts
        )
    assert solve_stats.converged
    torch.testing.assert_close(z_relax, z_solve, rtol=1e-7, atol=1e-9)
    # and it is a fixed point of the map itself
    torch.testing.assert_close(core(z_relax, u).detach(), z_relax, rtol=1e-7, atol=1e-9)


def test_relaxation_restores_the_layer_state_afterwards():
    core = AnalogCore(4, PCM, contraction=0.8)
    core.train()
    layer = core.feedback
    profile = layer.profile
    u = torch.randn(3, 4, generator=_gen(3))
    for noise in (True, False):
        relax(core, u, noise=noise, max_tau=20.0)
        assert layer.profile is profile
        assert layer.training is True
        assert layer.eval_noise is False
        assert layer.chip_read is None


def test_continuous_time_removes_converters_and_programming_noise_and_scales_read_noise():
    core = AnalogCore(4, PCM, contraction=0.8)
    layer = core.feedback
    with continuous_time(core, 3.0, noise=True):
        inside = layer.profile
        assert inside.dac_bits is None and inside.adc_bits is None
        assert inside.prog_noise_std == 0.0 and inside.prog_noise_poly == ()
        assert inside.read_noise_std == pytest.approx(3.0 * PCM.read_noise_std)
        assert inside.output_noise_std == pytest.approx(3.0 * PCM.output_noise_std)
        assert layer.eval_noise is True and layer.training is False
    with continuous_time(core, 3.0, noise=False):
        assert not layer.profile.has_noise
    assert layer.profile is PCM


def test_continuous_time_restores_the_layer_when_the_block_raises():
    core = AnalogCore(4, PCM, contraction=0.8)
    core.train()
    with pytest.raises(RuntimeError, match="boom"), continuous_time(core, 2.0, noise=True):
        raise RuntimeError("boom")
    assert core.feedback.profile is PCM and core.feedback.training


def test_relaxation_on_a_deployed_chip_uses_and_restores_the_chip_read():
    core = AnalogCore(4, PCM, contraction=0.8).eval()
    u = 0.5 * torch.randn(3, 4, generator=_gen(4))
    with Chip(PCM, seed=0).deploy(core):
        chip_read = core.feedback.chip_read
        assert chip_read is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            z, stats = relax(core, u, max_tau=30.0)
        assert core.feedback.chip_read is chip_read
    assert torch.isfinite(z).all()
    assert stats.tau_s == pytest.approx(relaxation_time_constant(PCM))


def test_relaxation_that_never_settles_warns_and_reports_max_iter():
    core = _linear_core(2, 0.5)
    u = torch.ones(1, 2, dtype=F64)
    with pytest.warns(RuntimeWarning, match="did not settle"):
        _, stats = relax(core, u, options=SolverOptions(tol=1e-14), max_tau=3.0, noise=False)
    assert stats.reason == "max_iter" and not stats.settled
    assert len(stats.changes) == 3 and stats.steps == 30
    assert math.isinf(stats.settling_time_s)


def test_expansive_relaxation_reports_divergence():
    core = _linear_core(2, 0.5)
    with torch.no_grad():
        core.feedback.weight.copy_(1e3 * torch.eye(2, dtype=F64))  # bypasses the projection
    u = torch.ones(1, 2, dtype=F64)
    with pytest.warns(RuntimeWarning, match="diverged"):
        _, stats = relax(core, u, steps_per_tau=2, max_tau=500.0, noise=False)
    assert stats.reason == "diverged" and not stats.settled


@pytest.mark.parametrize("kwargs", [{"steps_per_tau": 1}, {"max_tau": 0.0}])
def test_relaxation_rejects_invalid_integration_settings(kwargs):
    core = _linear_core(2, 0.5)
    with pytest.raises(ValueError):
        relax(core, torch.ones(1, 2, dtype=F64), **kwargs)


def test_noise_free_profile_settles_the_same_with_noise_requested():
    core = AnalogCore(1, IDEAL, activation="identity", contraction=0.99).double()
    with torch.no_grad():
        core.feedback.weight.fill_(0.98)
    u = torch.full((2, 1), 0.1, dtype=F64)
    z, stats = relax(core, u, noise=True, max_tau=3000.0)
    z_quiet, quiet = relax(core, u, noise=False, max_tau=3000.0)
    assert stats.reason == quiet.reason == "converged"
    assert stats.settling_time_s == quiet.settling_time_s
    torch.testing.assert_close(z, z_quiet, rtol=0, atol=0)
    # settled means a change below tol per τ: the distance left is at most tol / (1 − ρ)
    torch.testing.assert_close(z, u / 0.02, rtol=1e-4 / (1 - math.exp(-0.02)), atol=0)
