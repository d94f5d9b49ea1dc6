"""Noise and drift statistics of the hardware model against analytic moments.

Conventions (module docstrings of ``analogtorch.hardware``): a weight row ``W_j`` is stored as
``w_hat = W_j / s_j`` with ``s_j = max_i |W_ji|``; inputs are ``x_hat = x / r_in``; noise
standard deviations are fractions of ``g_max`` per weight, so a per-weight std ``sigma``
gives an output variance ``sigma^2 sum_i x_hat_i^2`` in units of ``g_max v_read``, i.e.
``sigma^2 sum_i x_hat_i^2 (s_j r_in)^2`` in the units of ``W x``. Every variance here is
estimated from at least 1e5 draws and must match within 2 % (the standard error of a sample
variance is ``sqrt(2/n)`` < 0.45 %).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import analogtorch as at
from analogtorch.hardware.chip import read_state
from analogtorch.hardware.noise import weight_space_noise
from analogtorch.hardware.random import NoiseSource

N_DRAWS = 200_000
T0 = 20.0  # drift_t0_seconds of every profile below


def _linear(
    weight: torch.Tensor,
    profile: at.HardwareProfile,
    input_range: float,
    bias: torch.Tensor | None = None,
) -> at.AnalogLinear:
    """An AnalogLinear holding ``weight`` with a fixed DAC full scale ``input_range``."""
    n_out, n_in = weight.shape
    layer = at.AnalogLinear(
        n_in, n_out, bias=bias is not None, profile=profile, noise_seed=17, dtype=weight.dtype
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
        layer.input_range.fill_(input_range)
        layer.input_range_initialized.fill_(True)
    return layer


def _pcm_poly(g: float, coeffs: tuple[float, ...]) -> float:
    """Per-device programming-noise std, written out from the PCM fit (fraction of g_max)."""
    return max(sum(c * g**k for k, c in enumerate(coeffs)), 0.0)


def _assert_relative(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    ratio = actual / expected
    assert bool(((ratio - 1).abs() < rel).all()), f"actual/expected = {ratio.tolist()}"


# Fixed small problem for the output-space variance tests.
WEIGHT = torch.tensor(
    [[0.8, -0.3, 0.5, -1.6, 0.2], [-0.4, 0.9, 0.1, 0.3, -0.2], [0.05, 0.05, -0.1, 0.02, 0.07]],
    dtype=torch.float64,
)
X = torch.tensor([1.1, -0.7, 0.4, 1.8, -1.3], dtype=torch.float64)
R_IN = 2.0
ROW_MAX = torch.tensor([1.6, 0.9, 0.1], dtype=torch.float64)  # s_j = max_i |W_ji|
SUM_XHAT_SQ = float(((X / R_IN) ** 2).sum())


def _reads(layer: torch.nn.Module, n: int = N_DRAWS) -> torch.Tensor:
    """``n`` reads of the fixed input (one per batch row), shape (n, out)."""
    with torch.no_grad():
        return layer(X.to(layer.weight.dtype).expand(n, -1))


def test_programming_noise_variance_matches_profile():
    profile = at.HardwareProfile(prog_noise_std=0.1)
    gen = torch.Generator().manual_seed(0)
    weight = torch.empty(4, 50_001).uniform_(-1.5, 1.5, generator=gen)
    weight[:, 0] = torch.tensor([2.0, -2.0, 2.0, -2.0])  # row max |W| = 2
    layer = _linear(weight, profile, 1.0)
    chip = at.Chip(profile, seed=1)
    programmed = chip.program_layer("fc", layer.weight, layer.row_tiling(profile))
    assert torch.equal(programmed.scale.flatten(), torch.full((4,), 2.0))
    deviation = (programmed.g_plus - programmed.g_minus - weight / 2.0).double().flatten()
    assert deviation.numel() >= 1e5
    assert abs(deviation.mean().item()) < 5 * 0.1 / math.sqrt(deviation.numel())
    assert deviation.var().item() == pytest.approx(0.1**2, rel=0.02)
    # The differential pair never holds a negative conductance.
    assert bool((programmed.g_plus >= 0).all()) and bool((programmed.g_minus >= 0).all())


@pytest.mark.parametrize("g", [0.2, 0.5, 1.0, -0.7])
def test_pcm_programming_noise_follows_the_conductance_polynomial(g):
    coeffs = at.HardwareProfile.preset("pcm").prog_noise_poly
    profile = at.HardwareProfile(prog_noise_poly=coeffs)
    weight = torch.full((1, N_DRAWS + 1), g)
    weight[0, 0] = 1.0  # row max |W| = 1, so w_hat = W
    layer = _linear(weight, profile, 1.0)
    programmed = at.Chip(profile, seed=2).program_layer(
        "fc", layer.weight, layer.row_tiling(profile)
    )
    deviation = (programmed.g_plus - programmed.g_minus - weight)[0, 1:].double()
    # One device of the pair is on at |g|, the other off at 0; each has std poly(G).
    expected = _pcm_poly(abs(g), coeffs) ** 2 + _pcm_poly(0.0, coeffs) ** 2
    assert deviation.var().item() == pytest.approx(expected, rel=0.02)
    assert abs(deviation.mean().item()) < 5 * math.sqrt(expected / deviation.numel())


def test_read_noise_variance_matches_profile():
    sigma_r = 0.05
    layer = _linear(WEIGHT, at.HardwareProfile(read_noise_std=sigma_r), R_IN).eval()
    at.set_eval_noise(layer, True)
    y = _reads(layer)
    expected_var = sigma_r**2 * SUM_XHAT_SQ * (ROW_MAX * R_IN) ** 2
    _assert_relative(y.var(dim=0), expected_var, 0.02)
    mean_error = (y.mean(dim=0) - WEIGHT @ X).abs()
    assert bool((mean_error < 5 * (expected_var / N_DRAWS).sqrt()).all())


def test_eval_without_eval_noise_is_noise_free():
    layer = _linear(WEIGHT, at.HardwareProfile(read_noise_std=0.05), R_IN).eval()
    y = _reads(layer, 4)
    assert torch.allclose(y, (WEIGHT @ X).expand(4, -1), atol=1e-12)


def test_output_noise_variance_matches_profile():
    sigma_out = 0.1
    layer = _linear(WEIGHT, at.HardwareProfile(output_noise_std=sigma_out), R_IN).eval()
    at.set_eval_noise(layer, True)
    y = _reads(layer)
    _assert_relative(y.var(dim=0), sigma_out**2 * (ROW_MAX * R_IN) ** 2, 0.02)


@pytest.mark.parametrize("adc_bits", [None, 16])
def test_output_noise_adds_up_over_the_tiles_of_a_layer(adc_bits):
    # 5 inputs on tiles of 3 rows: two tiles, each with its own read-out noise.
    sigma_out = 0.1
    profile = at.HardwareProfile(
        output_noise_std=sigma_out,
        tile_rows=3,
        adc_bits=adc_bits,
        adc_range=64.0,
        learn_ranges=False,
    )
    layer = _linear(WEIGHT, profile, R_IN).eval()
    at.set_eval_noise(layer, True)
    y = _reads(layer)
    _assert_relative(y.var(dim=0), 2 * sigma_out**2 * (ROW_MAX * R_IN) ** 2, 0.02)


def test_training_noise_variance_is_programming_plus_read_noise():
    sigma_p, sigma_r = 0.1, 0.05
    layer = _linear(
        WEIGHT, at.HardwareProfile(prog_noise_std=sigma_p, read_noise_std=sigma_r), R_IN
    ).train()
    y = _reads(layer)
    expected_var = (sigma_p**2 + sigma_r**2) * SUM_XHAT_SQ * (ROW_MAX * R_IN) ** 2
    _assert_relative(y.var(dim=0), expected_var, 0.02)


def test_training_noise_with_the_pcm_polynomial_depends_on_each_conductance():
    coeffs = at.HardwareProfile.preset("pcm").prog_noise_poly
    sigma_r = 0.01
    layer = _linear(
        WEIGHT, at.HardwareProfile(prog_noise_poly=coeffs, read_noise_std=sigma_r), R_IN
    ).train()
    y = _reads(layer)
    x_hat = X / R_IN
    expected = []
    for j in range(WEIGHT.shape[0]):
        w_hat = WEIGHT[j] / ROW_MAX[j]
        per_weight = [
            _pcm_poly(abs(w), coeffs) ** 2 + _pcm_poly(0.0, coeffs) ** 2 + sigma_r**2
            for w in w_hat.tolist()
        ]
        var = sum(v * xi**2 for v, xi in zip(per_weight, x_hat.tolist(), strict=True))
        expected.append(var * (ROW_MAX[j].item() * R_IN) ** 2)
    _assert_relative(y.var(dim=0), torch.tensor(expected, dtype=torch.float64), 0.02)


def test_shot_noise_variance_is_proportional_to_the_summed_currents():
    k_shot = 0.004
    layer = _linear(WEIGHT, at.HardwareProfile(shot_noise_coeff=k_shot), R_IN).eval()
    at.set_eval_noise(layer, True)
    y = _reads(layer)
    currents = ((WEIGHT / ROW_MAX[:, None]).abs() * (X / R_IN).abs()).sum(dim=1)
    _assert_relative(y.var(dim=0), k_shot * currents * (ROW_MAX * R_IN) ** 2, 0.02)


@pytest.mark.parametrize("time_s", [T0, 100 * T0, 0.0])
def test_chip_read_noise_grows_logarithmically_with_time(time_s):
    sigma_r, gamma = 0.05, 0.5
    profile = at.HardwareProfile(
        read_noise_std=sigma_r, read_noise_log_growth=gamma, drift_t0_seconds=T0
    )
    layer = _linear(WEIGHT, profile, R_IN).eval()
    with at.Chip(profile, seed=3).deploy(layer, time_s=time_s):
        y = _reads(layer)
    sigma_t_sq = sigma_r**2 * (1 + gamma * math.log(1 + time_s / T0))
    expected_var = sigma_t_sq * SUM_XHAT_SQ * (ROW_MAX * R_IN) ** 2
    _assert_relative(y.var(dim=0), expected_var, 0.02)
    mean_error = (y.mean(dim=0) - WEIGHT @ X).abs()
    assert bool((mean_error < 5 * (expected_var / N_DRAWS).sqrt()).all())


def test_chip_output_noise_variance_matches_profile():
    sigma_out = 0.03
    profile = at.HardwareProfile(output_noise_std=sigma_out)
    layer = _linear(WEIGHT, profile, R_IN).eval()
    with at.Chip(profile, seed=4).deploy(layer, time_s=1000.0):
        y = _reads(layer)
    _assert_relative(y.var(dim=0), sigma_out**2 * (ROW_MAX * R_IN) ** 2, 0.02)


DRIFT_TIMES = [0.0, T0, 10 * T0, 1000 * T0]


def _drift_layer(compensation: bool) -> tuple[at.AnalogLinear, at.HardwareProfile]:
    profile = at.HardwareProfile(
        drift_nu_mean=0.05, drift_nu_std=0.0, drift_t0_seconds=T0, drift_compensation=compensation
    )
    return _linear(WEIGHT.float(), profile, R_IN).eval(), profile


@pytest.mark.parametrize("time_s", DRIFT_TIMES)
def test_drift_follows_power_law(time_s):
    layer, profile = _drift_layer(compensation=False)
    with at.Chip(profile, seed=5).deploy(layer, time_s=time_s), torch.no_grad():
        y = layer(X.float()[None]).double()[0]
    factor = (max(time_s, T0) / T0) ** -0.05
    assert torch.allclose(y, factor * (WEIGHT @ X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("time_s", DRIFT_TIMES)
def test_drift_compensation_restores_the_outputs_at_t0(time_s):
    layer, profile = _drift_layer(compensation=True)
    with at.Chip(profile, seed=5).deploy(layer, time_s=time_s), torch.no_grad():
        y = layer(X.float()[None]).double()[0]
    assert torch.allclose(y, WEIGHT @ X, rtol=1e-5, atol=1e-6)


def _drift_factors(profile: at.HardwareProfile, time_s: float, n: int) -> torch.Tensor:
    """Per-device drift factors read through a 1-input layer with weights of +-1."""
    weight = torch.ones(n, 1)
    weight[1::2] = -1.0  # half the weights on G-, half on G+
    layer = _linear(weight, profile, 1.0).eval()
    with at.Chip(profile, seed=6).deploy(layer, time_s=time_s), torch.no_grad():
        y = layer(torch.ones(1, 1))[0]
    return (y * weight[:, 0]).double()  # = G(t)/G(t0) of the one active device of each pair


def test_drift_exponent_spread_gives_lognormal_device_factors():
    nu_mean, nu_std, n = 0.05, 0.01, 100_000
    profile = at.HardwareProfile(drift_nu_mean=nu_mean, drift_nu_std=nu_std, drift_t0_seconds=T0)
    time_s = 1000 * T0
    log_t = math.log(time_s / T0)
    log_factor = _drift_factors(profile, time_s, n).log()
    expected_mean, expected_std = -nu_mean * log_t, nu_std * log_t
    assert abs(log_factor.mean().item() - expected_mean) < 5 * expected_std / math.sqrt(n)
    assert log_factor.std().item() == pytest.approx(expected_std, rel=0.02)


def test_drift_never_increases_a_conductance():
    # nu ~ N(0.01, 0.05) is negative for ~42 % of devices; those must not grow (nu clipped).
    profile = at.HardwareProfile(drift_nu_mean=0.01, drift_nu_std=0.05, drift_t0_seconds=T0)
    n = 100_000
    factor = _drift_factors(profile, 100 * T0, n)
    assert factor.max().item() <= 1.0
    p_clipped = 0.5 * math.erfc(0.01 / 0.05 / math.sqrt(2))  # P(nu < 0)
    frac_one = (factor == 1.0).double().mean().item()
    assert abs(frac_one - p_clipped) < 5 * math.sqrt(p_clipped * (1 - p_clipped) / n)


def test_systematic_conductance_shift_grows_with_log_time():
    slope = -0.02
    profile = at.HardwareProfile(noise_mean_log_slope=slope, drift_t0_seconds=T0)
    layer = _linear(WEIGHT.float(), profile, R_IN).eval()
    time_s = 50 * T0
    with at.Chip(profile, seed=7).deploy(layer, time_s=time_s), torch.no_grad():
        y = layer(X.float()[None]).double()[0]
    expected = (1 + slope * math.log(1 + time_s / T0)) * (WEIGHT @ X)
    assert torch.allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_both_devices_of_a_pair_drift_with_their_own_independent_exponents():
    # A pair with G+ = G- = 0.5 stores w = 0; after drift w(t) = 0.5 (f+ - f-) with
    # f = (t/t0)^-nu per device. Independent exponents give Var w(t) = Var(f) / 2 with
    # Var f = exp(-2 mu L + s^2 L^2) (exp(s^2 L^2) - 1), L = ln(t/t0) (lognormal); a G- that
    # drifted with G+'s exponent would give w(t) = 0 exactly.
    nu_mean, nu_std, n = 0.05, 0.01, 100_000
    profile = at.HardwareProfile(drift_nu_mean=nu_mean, drift_nu_std=nu_std, drift_t0_seconds=T0)
    layer = _linear(torch.ones(n, 1), profile, 1.0)
    chip = at.Chip(profile, seed=8)
    programmed = chip.program_layer("fc", layer.weight, layer.row_tiling(profile))
    nus = torch.stack([programmed.nu_plus[:, 0], programmed.nu_minus[:, 0]])
    assert abs(torch.corrcoef(nus)[0, 1].item()) < 0.02
    for nu in (programmed.nu_plus, programmed.nu_minus):
        assert nu.std().item() == pytest.approx(nu_std, rel=0.02)
    half = torch.full_like(programmed.g_plus, 0.5)
    pair = dataclasses.replace(programmed, g_plus=half, g_minus=half.clone())
    time_s = 1000 * T0
    read = read_state(pair, profile, time_s, NoiseSource(0))
    log_t = math.log(time_s / T0)
    s2 = (nu_std * log_t) ** 2
    var_f = math.exp(-2 * nu_mean * log_t + s2) * math.expm1(s2)
    assert read.w_hat.double().var().item() == pytest.approx(var_f / 2, rel=0.03)
    assert abs(read.w_hat.double().mean().item()) < 5 * math.sqrt(var_f / 2 / n)


@pytest.mark.parametrize(
    "fields",
    [
        {"prog_noise_poly": (0.0105392, 0.0786, -0.046924)},  # the PCM fit
        {"prog_noise_poly": (0.02, -0.1, 0.125), "mismatch_std": 0.05},  # zero at g = 0.4
        {"prog_noise_std": 0.05, "mismatch_std": 0.02},
    ],
)
def test_weight_space_noise_gradient_matches_finite_differences(fields):
    profile = at.HardwareProfile(**fields)
    gen = torch.Generator().manual_seed(3)
    w = torch.empty(40, dtype=torch.float64).uniform_(-1, 1, generator=gen).requires_grad_()
    z = torch.randn(40, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: weight_space_noise(v, z, profile), (w,))


def test_weight_space_noise_has_the_variance_of_a_programmed_chip():
    # Per-batch training draws the weights as a chip does: w + sigma(w) z with the variance
    # of prog_noise_variance plus mismatch^2 w^2, written out here from the PCM fit.
    coeffs = at.HardwareProfile.preset("pcm").prog_noise_poly
    profile = at.HardwareProfile(prog_noise_poly=coeffs, prog_noise_std=0.01, mismatch_std=0.03)
    n = N_DRAWS
    for w in (-0.8, 0.0, 0.35, 1.0):
        w_hat = torch.full((n,), w, dtype=torch.float64)
        z = torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        draws = weight_space_noise(w_hat, z, profile)
        expected = 0.01**2 + _pcm_poly(abs(w), coeffs) ** 2 + _pcm_poly(0.0, coeffs) ** 2
        expected += (0.03 * w) ** 2
        assert draws.var().item() == pytest.approx(expected, rel=0.02)
        assert abs(draws.mean().item() - w) < 5 * math.sqrt(expected / n)


# -- per-batch training draws (training_weight_noise="per-batch") -----------------------------

N_ROWS = 20_000


def _identical_rows_layer(profile: at.HardwareProfile) -> at.AnalogLinear:
    """``N_ROWS`` outputs that all store WEIGHT's first row: independent draws of one law."""
    return _linear(WEIGHT[:1].expand(N_ROWS, -1).clone(), profile, R_IN).train()


def test_per_batch_training_noise_has_the_per_weight_variance_over_the_outputs():
    coeffs = at.HardwareProfile.preset("pcm").prog_noise_poly
    sigma_r, m = 0.02, 0.05
    profile = at.HardwareProfile(
        prog_noise_poly=coeffs,
        read_noise_std=sigma_r,
        mismatch_std=m,
        training_weight_noise="per-batch",
    )
    layer = _identical_rows_layer(profile)
    with torch.no_grad():
        y = layer(X[None])[0]  # one forward: one weight draw, N_ROWS outputs
    x_hat, w_hat = X / R_IN, WEIGHT[0] / ROW_MAX[0]
    var = sum(
        (_pcm_poly(abs(w), coeffs) ** 2 + _pcm_poly(0.0, coeffs) ** 2 + (m * w) ** 2 + sigma_r**2)
        * xi**2
        for w, xi in zip(w_hat.tolist(), x_hat.tolist(), strict=True)
    )
    expected = var * (ROW_MAX[0].item() * R_IN) ** 2
    assert y.var().item() == pytest.approx(expected, rel=0.03)
    assert abs(y.mean().item() - (WEIGHT[0] @ X).item()) < 5 * math.sqrt(expected / N_ROWS)


def test_per_batch_training_noise_is_shared_by_the_batch_and_read_noise_is_not():
    # Two copies of one input in a batch see the same programmed weights: their outputs
    # differ only by read noise, Var(y1 - y2) = 2 sigma_r^2 sum x_hat^2 (s r_in)^2.
    sigma_p, sigma_r = 0.1, 0.02
    profile = at.HardwareProfile(
        prog_noise_std=sigma_p, read_noise_std=sigma_r, training_weight_noise="per-batch"
    )
    layer = _identical_rows_layer(profile)
    with torch.no_grad():
        y = layer(X.expand(2, -1))
    scale_sq = (ROW_MAX[0].item() * R_IN) ** 2
    diff_var = (y[0] - y[1]).var().item()
    assert diff_var == pytest.approx(2 * sigma_r**2 * SUM_XHAT_SQ * scale_sq, rel=0.03)
    expected = (sigma_p**2 + sigma_r**2) * SUM_XHAT_SQ * scale_sq
    assert y[0].var().item() == pytest.approx(expected, rel=0.03)


def test_per_sample_training_noise_is_independent_across_the_batch():
    profile = at.HardwareProfile(prog_noise_std=0.1, training_weight_noise="per-sample")
    layer = _identical_rows_layer(profile)
    with torch.no_grad():
        y = layer(X.expand(2, -1))
    expected = 0.1**2 * SUM_XHAT_SQ * (ROW_MAX[0].item() * R_IN) ** 2
    assert (y[0] - y[1]).var().item() == pytest.approx(2 * expected, rel=0.03)


def test_noisy_presets_train_with_per_batch_draws_and_custom_profiles_default_to_exact():
    for name in ("pcm", "rram", "seed-4bit-10pct"):
        assert at.HardwareProfile.preset(name).training_weight_noise == "per-batch"
    assert at.HardwareProfile(prog_noise_std=0.1).training_weight_noise == "per-sample"
