"""Physical dynamics of the AIS samplers: integrators against exact solutions, Kuramoto
locking against its analytic threshold, the Ising pitchfork against its fixed points, and
the couplings' masks, quantisation and programming noise against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from analogtorch.ais.couplings import Couplings, connectivity_mask
from analogtorch.ais.integrators import euler_step, integrate, rk4_step
from analogtorch.ais.ising import IsingAIS
from analogtorch.ais.oscillators import OscillatorAIS
from analogtorch.ais.schedule import PiecewiseConstant
from analogtorch.hardware.noise import prog_noise_variance
from analogtorch.hardware.profile import HardwareProfile

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _oscillator_pair(delta_omega: float, coupling: float, dt: float, steps: int) -> OscillatorAIS:
    """Two units (one visible, one hidden), ω = ±Δω/2, J_12 = J_21 = K, no gain/b/k_s."""
    model = OscillatorAIS(
        (1, 1, 1), n_hidden=1, steps_per_segment=steps, dt=dt, coupling_gain=False
    ).double()
    model.omega.set_values(torch.tensor([0.5 * delta_omega, -0.5 * delta_omega]))
    model.couplings.assign(torch.tensor([[0.0, coupling], [coupling, 0.0]]))
    return model


# -- integrators ----------------------------------------------------------------------------


def test_uncoupled_oscillators_rotate_at_natural_frequency():
    """J = 0, b = 0, k_s = 0: dθ_i/dt = ω_i, so θ(T) − θ(0) = ω T exactly (RK4 is exact)."""
    model = OscillatorAIS((1, 2, 3), n_hidden=2, steps_per_segment=50, dt=0.2, segments=2)
    model = model.double()
    omega = torch.linspace(-0.9, 0.9, model.n_units, dtype=F64)
    model.omega.set_values(omega)
    model.couplings.assign(torch.zeros(model.n_units, model.n_units))
    assert torch.equal(model.bias(), torch.zeros_like(model.bias()))
    assert torch.equal(model.shil(), torch.zeros_like(model.shil()))
    theta0 = model.sample_latent(4, _gen(0))
    with torch.no_grad():
        theta = model.evolve(theta0)
    horizon = model.n_steps * model.dt
    torch.testing.assert_close(theta - theta0, (omega * horizon).expand(4, -1), atol=1e-10, rtol=0)


def test_kuramoto_pair_locks_above_threshold():
    """Convention: dθ1/dt = ω1 + K sin(θ2 − θ1), dθ2/dt = ω2 + K sin(θ1 − θ2). Then
    φ = θ1 − θ2 obeys dφ/dt = Δω − 2K sin φ (Δω = ω1 − ω2), which has fixed points iff
    2K >= |Δω|: the locking threshold is K_c = |Δω| / 2. The stable one (d/dφ < 0, cos φ > 0)
    is φ* = arcsin(Δω / 2K)."""
    delta, k_c = 1.0, 0.5
    coupling = 1.25 * k_c
    model = _oscillator_pair(delta, coupling, dt=0.1, steps=1000)
    theta0 = torch.tensor([[0.3, 2.5], [4.0, 1.0], [0.0, 0.0]], dtype=F64)
    with torch.no_grad():
        theta = model.evolve(theta0)
    phi = torch.remainder(theta[:, 0] - theta[:, 1] + math.pi, 2 * math.pi) - math.pi
    expected = math.asin(delta / (2 * coupling))
    torch.testing.assert_close(phi, torch.full_like(phi, expected), atol=1e-8, rtol=0)


def test_kuramoto_pair_drifts_below_threshold():
    """Below K_c the phase slips: dφ/dt = Δω − 2K sin φ has no fixed point and φ grows by
    2π per period 2π / sqrt(Δω² − 4K²) (the mean of 1/φ' over one slip)."""
    delta, k_c = 1.0, 0.5
    coupling = 0.9 * k_c
    dt, steps = 0.1, 2000
    model = _oscillator_pair(delta, coupling, dt=dt, steps=steps)
    theta0 = torch.tensor([[0.0, 0.0]], dtype=F64)
    with torch.no_grad():
        trajectory = model.evolve(theta0, save_every=steps // 2)
    phi = trajectory[:, 0, 0] - trajectory[:, 0, 1]
    horizon = steps * dt
    slip_rate = math.sqrt(delta**2 - 4 * coupling**2)
    assert phi[-1] - phi[0] > 4 * 2 * math.pi  # no locking: several full slips
    # The mean rate over the horizon agrees to within one slip per horizon.
    assert abs((phi[-1] - phi[0]).item() / horizon - slip_rate) < 2 * math.pi / horizon
    assert phi[2] - phi[1] > 2 * math.pi  # still slipping in the second half


def test_euler_maruyama_pure_diffusion_variance_is_sigma_squared_t():
    """dx = σ dW: x(T) ~ N(0, σ² T). With N samples the sample variance has std
    σ² T sqrt(2 / N); the tolerance is five of those."""
    sigma, dt, steps, n = 0.7, 0.01, 200, 20000
    x = integrate(
        lambda t, x: torch.zeros_like(x),
        torch.zeros(n, dtype=F64),
        dt=dt,
        n_steps=steps,
        method="euler_maruyama",
        noise_std=sigma,
        generator=_gen(1),
    )
    variance = sigma**2 * steps * dt
    assert abs(x.mean().item()) < 5 * math.sqrt(variance / n)
    assert abs(x.var().item() - variance) < 5 * variance * math.sqrt(2 / n)


def test_rk4_is_fourth_order_and_euler_first_order():
    """dx/dt = −x, x(1) = e^{−1}: halving dt divides the error by 2^4 (RK4), 2 (Euler)."""

    def error(step_fn, dt: float) -> float:
        x = torch.ones((), dtype=F64)
        for t in range(round(1 / dt)):
            x = step_fn(lambda t, x: -x, t, x, dt)
        return abs(x.item() - math.exp(-1))

    rk4_ratio = error(rk4_step, 0.1) / error(rk4_step, 0.05)
    euler_ratio = error(euler_step, 0.01) / error(euler_step, 0.005)
    assert 15.0 < rk4_ratio < 17.0
    assert 1.9 < euler_ratio < 2.1


def test_integrate_trajectory_ends_at_final_state_and_rejects_bad_options():
    x0 = torch.ones(3, dtype=F64)
    final = integrate(lambda t, x: -x, x0, dt=0.1, n_steps=7)
    trajectory = integrate(lambda t, x: -x, x0, dt=0.1, n_steps=7, save_every=3)
    assert trajectory.shape == (4, 3)  # x(0), x(3), x(6), x(7)
    torch.testing.assert_close(trajectory[-1], final)
    torch.testing.assert_close(trajectory[0], x0)
    with pytest.raises(ValueError, match="euler_maruyama"):
        integrate(lambda t, x: -x, x0, dt=0.1, n_steps=2, method="rk4", noise_std=0.1)
    with pytest.raises(ValueError, match="method='leapfrog'"):
        integrate(lambda t, x: -x, x0, dt=0.1, n_steps=2, method="leapfrog")  # type: ignore[arg-type]


def test_quarter_latent_has_the_stated_moments_and_uniform_stays_the_default():
    """``initial_phase="quarter"``: θ(0) = π/2 + σ N(0, 1); over 20,000 draws the mean is
    within 5 standard errors of π/2 and the std within 2 % of σ (relative s.e. ≈ 0.5 %)."""
    model = OscillatorAIS((1, 10, 10), n_hidden=0, initial_phase="quarter", phase_spread=0.2)
    theta = model.sample_latent(200, _gen(3)).double()
    n = theta.numel()
    assert abs(theta.mean().item() - math.pi / 2) < 5 * 0.2 / math.sqrt(n)
    assert abs(theta.std().item() / 0.2 - 1) < 0.02
    uniform = OscillatorAIS((1, 10, 10)).sample_latent(200, _gen(3))
    assert uniform.min().item() >= 0 and uniform.max().item() < 2 * math.pi
    assert abs(uniform.mean().item() - math.pi) < 5 * (2 * math.pi / math.sqrt(12)) / math.sqrt(n)


def test_hidden_latent_draws_free_phases_in_the_hidden_units_only():
    """``initial_phase="hidden"``: visible units at π/2 + σ N(0, 1) (mean and std as above),
    hidden units U[0, 2π) (mean π, variance (2π)²/12 within 5 standard errors)."""
    model = OscillatorAIS((1, 6, 6), n_hidden=64, initial_phase="hidden", phase_spread=0.2)
    theta = model.sample_latent(500, _gen(4)).double()
    visible, hidden = theta[:, :36], theta[:, 36:]
    assert abs(visible.mean().item() - math.pi / 2) < 5 * 0.2 / math.sqrt(visible.numel())
    assert abs(visible.std().item() / 0.2 - 1) < 0.03
    assert hidden.min().item() >= 0 and hidden.max().item() < 2 * math.pi
    sd = 2 * math.pi / math.sqrt(12)
    assert abs(hidden.mean().item() - math.pi) < 5 * sd / math.sqrt(hidden.numel())
    assert abs(hidden.std().item() / sd - 1) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_phase": "random"}, "initial_phase='random'"),
        ({"initial_phase": "quarter", "phase_spread": 0.0}, "phase_spread=0.0"),
        ({"phase_spread": float("inf")}, "phase_spread=inf"),
        ({"initial_phase": "hidden"}, "needs n_hidden >= 1"),
    ],
)
def test_bad_latent_options_are_refused(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        OscillatorAIS((1, 2, 2), **kwargs)


def test_shil_unit_released_at_the_quarter_phase_follows_the_exact_solution():
    """One uncoupled unit with SHIL only, dθ/dt = −k sin 2θ, has the exact solution
    tan θ(t) = tan θ(0) e^{−2kt}: from θ(0) = π/2 ± δ it leaves the unstable midpoint at the
    rate 2k and settles at π (pixel 1) or 0 (pixel 0) by the side it started on."""
    k, dt, steps = 0.8, 0.01, 500
    model = OscillatorAIS((1, 1, 2), steps_per_segment=steps, dt=dt, coupling_gain=False)
    model = model.double()
    model.couplings.assign(torch.zeros(2, 2))
    model.shil.set_values(k)
    theta0 = torch.tensor([[math.pi / 2 + 0.05, math.pi / 2 - 0.05]], dtype=F64)
    with torch.no_grad():
        theta = model.evolve(theta0)
    expected = torch.atan(torch.tan(theta0) * math.exp(-2 * k * steps * dt))
    expected = torch.remainder(expected, math.pi)  # θ stays in (0, π): atan's branch
    torch.testing.assert_close(theta, expected, atol=1e-8, rtol=0)
    pixels = model.readout(theta)
    assert pixels[0, 0] > 0.99 and pixels[0, 1] < 0.01


# -- couplings ------------------------------------------------------------------------------


def test_quantized_couplings_are_symmetric_masked_and_on_the_grid():
    mask = connectivity_mask("random", 24, degree=6, seed=3)
    couplings = Couplings(mask, j_max=2.0, bits=4, init_std=1.5, generator=_gen(0))
    j = couplings()
    values = torch.unique(j)
    assert len(values) <= 2**4
    assert bool((values == 0).any())
    assert torch.equal(j, j.T)
    assert bool((j[~mask] == 0).all())
    assert j.abs().max() <= 2.0
    codes = j / (2.0 / 7)  # step j_max / (2^(bits-1) - 1)
    torch.testing.assert_close(codes, codes.round(), atol=1e-5, rtol=0)
    (j * torch.randn(24, 24, generator=_gen(1))).sum().backward()
    grad = couplings.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all())
    assert bool((grad[mask] != 0).any())
    assert bool((grad[~mask] == 0).all())


def test_local_mask_degrees_on_a_4x4_grid():
    mask = connectivity_mask("local", 16 + 2, grid_shape=(4, 4), n_visible=16, radius=1)
    degree = mask[:16, :16].sum(1).reshape(4, 4)
    expected = torch.tensor([[3, 5, 5, 3], [5, 8, 8, 5], [5, 8, 8, 5], [3, 5, 5, 3]])
    assert torch.equal(degree, expected)
    assert bool(mask[16:, :].sum(1).eq(17).all())  # hidden: all visible and the other hidden
    assert torch.equal(mask, mask.T) and not bool(mask.diagonal().any())


def test_local_mask_radius_beyond_the_grid_couples_every_pair():
    """A radius larger than the grid (even one past int64) is the dense mask."""
    dense = connectivity_mask("dense", 9)
    for radius in (3, 2**64):
        assert torch.equal(connectivity_mask("local", 9, grid_shape=(3, 3), radius=radius), dense)


def test_a_system_too_large_for_dense_couplings_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"16385 units .* at most 16384; .* 1\.1 GB"):
        IsingAIS((1, 128, 128), n_hidden=1)


def test_random_and_block_masks():
    random_mask = connectivity_mask("random", 400, degree=8, seed=0)
    mean_degree = random_mask.sum(1).double().mean().item()
    # Edge count ~ Binomial(n(n-1)/2, p): std of the mean degree ≈ sqrt(2 · 8 / 400) = 0.2.
    assert abs(mean_degree - 8) < 1.0
    assert torch.equal(random_mask, random_mask.T) and not bool(random_mask.diagonal().any())
    assert torch.equal(random_mask, connectivity_mask("random", 400, degree=8, seed=0))
    block = connectivity_mask("block", 10, block_size=4)
    assert block.shape == (10, 10)
    assert block.sum(1).tolist() == [3] * 8 + [1] * 2
    assert not bool(block[:4, 4:].any())


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("ring", {}, "'dense', 'local', 'random', 'block'"),
        ("local", {}, "grid_shape"),
        ("local", {"grid_shape": (3, 3), "n_visible": 8}, "n_visible=8"),
        ("random", {"degree": 20}, "degree=20"),
        ("local", {"grid_shape": (3, 3), "radius": -1}, "radius=-1"),
        ("local", {"grid_shape": (3, 3), "radius": 1.5}, "radius=1.5"),
    ],
)
def test_connectivity_mask_rejects_bad_options(kind: str, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        connectivity_mask(kind, 10, **kwargs)


def test_programming_noise_variance_matches_profile():
    """One draw per device and call: Var[J_noisy − J] = sigma_p(J / j_max)^2 j_max^2."""
    profile = HardwareProfile(prog_noise_std=0.03, prog_noise_poly=(0.0, 0.08))
    j_max, n, draws = 2.0, 6, 2000
    couplings = Couplings(
        connectivity_mask("block", n, block_size=4),
        j_max=j_max,
        profile=profile,
        init_std=1.0,
        generator=_gen(0),
    ).double()
    target = couplings()
    gen = _gen(5)
    with torch.no_grad():
        noisy = torch.stack([couplings(gen) for _ in range(draws)])
    assert bool((noisy[:, ~couplings.mask] == 0).all())
    assert torch.equal(noisy, noisy.transpose(1, 2))
    expected = prog_noise_variance(profile, target / j_max) * j_max**2
    measured = (noisy - target).var(0)
    present = couplings.mask
    # Sample variance has relative std sqrt(2 / draws) ≈ 3.2 %: allow five of those.
    torch.testing.assert_close(measured[present], expected[present], rtol=0.16, atol=0)


def test_piecewise_constant_schedule_segments_and_bounds():
    schedule = PiecewiseConstant(3, (2,), init=torch.tensor([0.1, -0.2]), bounds=(-1.0, 1.0))
    assert schedule().shape == (3, 2)
    torch.testing.assert_close(schedule.value(2), torch.tensor([0.1, -0.2]))
    assert [schedule.segment_of(s, 4) for s in (0, 3, 4, 11, 12, 50)] == [0, 0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="strictly inside"):
        schedule.set_values(1.0)


# -- checkpointing and Ising ----------------------------------------------------------------


def test_checkpointing_matches_plain_backward():
    profile = HardwareProfile(prog_noise_std=0.05, read_noise_std=0.05)
    model = OscillatorAIS(
        (1, 3, 3),
        n_hidden=2,
        segments=3,
        steps_per_segment=4,
        dt=0.1,
        method="euler_maruyama",
        profile=profile,
        bits=5,
        mask="local",
    )
    model = model.double()
    z = model.sample_latent(4, _gen(0))

    def run(checkpoint_every: int | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        model.checkpoint_every = checkpoint_every
        out = model(z, _gen(7))
        (out * torch.linspace(-1, 1, out.numel(), dtype=F64).reshape(out.shape)).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    out_plain, grads_plain = run(None)
    out_ckpt, grads_ckpt = run(5)  # chunks do not align with the 4-step segments
    torch.testing.assert_close(out_ckpt, out_plain, atol=1e-12, rtol=0)
    for g_ckpt, g_plain in zip(grads_ckpt, grads_plain, strict=True):
        torch.testing.assert_close(g_ckpt, g_plain, atol=1e-12, rtol=1e-10)
    assert not torch.equal(out_plain, model(z, _gen(8)).detach())  # the noise is live


@pytest.mark.parametrize("pump", [2.0, 1.44])
def test_ising_unit_above_threshold_settles_at_bistable_fixed_points(pump: float):
    """dx/dt = −x³ + (p − 1) x: fixed points 0 (unstable for p > 1) and ±sqrt(p − 1); the
    sign of x(0) picks the branch."""
    model = IsingAIS((1, 1, 2), steps_per_segment=400, dt=0.1, coupling_gain=False).double()
    model.couplings.assign(torch.zeros(2, 2))
    model.pump.set_values(pump)
    x = model.evolve(torch.tensor([[0.05, -0.3]], dtype=F64))
    root = math.sqrt(pump - 1)
    torch.testing.assert_close(x, torch.tensor([[root, -root]], dtype=F64), atol=1e-9, rtol=0)


def test_ising_unit_below_threshold_decays_to_zero():
    model = IsingAIS((1, 1, 2), steps_per_segment=600, dt=0.1, coupling_gain=False).double()
    model.couplings.assign(torch.zeros(2, 2))
    model.pump.set_values(0.5)
    x = model.evolve(torch.tensor([[0.5, -1.5]], dtype=F64))
    assert x.abs().max() < 1e-9


# -- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [OscillatorAIS, IsingAIS])
def test_generator_outputs_images_and_trains_every_parameter(cls):
    profile = HardwareProfile(prog_noise_std=0.02, read_noise_std=0.01)
    model = cls(
        (1, 4, 4),
        n_hidden=3,
        segments=2,
        steps_per_segment=3,
        dt=0.1,
        method="euler_maruyama",
        mask="local",
        bits=4,
        profile=profile,
        checkpoint_every=4,
    )
    gen = _gen(0)
    z = model.sample_latent(6, gen)
    assert z.shape == (6, model.latent_dim)
    images = model(z, gen)
    assert images.shape == (6, 1, 4, 4)
    assert bool(((images >= 0) & (images <= 1)).all())
    ((images - 0.3) ** 2).mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert bool(torch.isfinite(param.grad).all()), name
        assert bool((param.grad != 0).any()), name
    assert model.duration_s == pytest.approx(6 * 0.1 * 1e-9)
    counts = model.parameter_counts()
    assert counts["couplings"] == model.couplings.n_present() == 93
    with torch.no_grad():  # no generator: the system's own stream, reproducible by reseed
        model.reseed(7)
        first, second = model(z), model(z)
        model.reseed(7)
        assert torch.equal(model(z), first) and not torch.equal(first, second)


def test_more_sampling_steps_hold_the_last_segment_s_controls() -> None:
    torch.manual_seed(0)
    model = OscillatorAIS((1, 2, 3), n_hidden=2, steps_per_segment=3, dt=0.2, segments=2)
    with torch.no_grad():
        for control in (model.bias, model.shil):  # two segments that differ
            control.raw.normal_()
    z = model.sample_latent(4, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="n_steps=0"):
        model.set_sampling_steps(0)
    with torch.no_grad():
        trained = model.evolve(z)
        drift = model.make_drift(model.coupling_matrix())
        expected = trained
        for _ in range(4):  # four more RK4 steps on segment 1, the last
            expected = rk4_step(drift, 1, expected, 0.2)
        model.set_sampling_steps(10)
        longer = model.evolve(z)
    assert model.duration_s == pytest.approx(10 * 0.2 * model.time_unit_s)
    torch.testing.assert_close(longer, expected)
    assert not torch.allclose(longer, trained)
