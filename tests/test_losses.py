"""Physics-informed regularisers (`analogtorch.losses`) against hand-computed values.

Each loss has at least one case whose value is written out by hand in a comment; the KL is
also checked against a numeric integral (scipy), the JS divergence against its bounds
``0`` (identical histograms) and ``ln 2`` (disjoint ones).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch import nn

from analogtorch.hardware.profile import HardwareProfile
from analogtorch.losses import (
    ActivationAlignment,
    BitDepthPenalty,
    JSCalibration,
    MomentMatching,
    Sparsity,
    WeightKL,
    gaussian_kl,
    js_divergence,
    weight_tensors,
)
from analogtorch.nn.linear import AnalogLinear

IDEAL = HardwareProfile.preset("ideal")
F64 = torch.float64


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# -- weight collection -------------------------------------------------------------------


def test_weight_tensors_of_a_model_are_linear_conv_and_analog_weights_without_biases():
    lin, conv = nn.Linear(3, 2), nn.Conv2d(1, 2, 3)
    analog = AnalogLinear(2, 2, profile=IDEAL)
    model = nn.Sequential(lin, nn.ReLU(), conv, analog, nn.BatchNorm1d(2))
    found = weight_tensors(model)
    assert [id(w) for w in found] == [id(lin.weight), id(conv.weight), id(analog.weight)]


def test_weight_tensors_counts_a_tied_weight_once():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    assert len(weight_tensors(nn.Sequential(a, b))) == 1


@pytest.mark.parametrize(
    ("weights", "error"),
    [([], ValueError), ([1.0, 2.0], TypeError), (nn.ReLU(), ValueError), (3.0, TypeError)],
)
def test_weight_tensors_rejects_empty_or_non_tensor_input(weights, error):
    with pytest.raises(error):
        weight_tensors(weights)


# -- BitDepthPenalty ---------------------------------------------------------------------


def test_bit_depth_penalty_hand_value_with_given_step():
    # W = [0.5, 3.2], Δ = 1, b = 2 -> 2^(b-1) = 2:
    # ReLU(0.5 - 2)^2 + ReLU(3.2 - 2)^2 = 0 + 1.2^2 = 1.44
    w = t([0.5, 3.2])
    assert BitDepthPenalty(bits=2, step=1.0)(w).item() == pytest.approx(1.44, abs=1e-12)
    # negative weights count by magnitude; Δ = 0.5: |-1.5|/0.5 = 3 -> (3 - 2)^2 = 1
    assert BitDepthPenalty(bits=2, step=0.5)(t([-1.5])).item() == pytest.approx(1.0)


def test_bit_depth_penalty_mean_divides_by_the_element_count():
    # sum over [0.5, 3.2] and [[-4.0]]: 1.44 + (4 - 2)^2 = 5.44, over 3 elements
    weights = [t([0.5, 3.2]), t([[-4.0]])]
    assert BitDepthPenalty(2, 1.0)(weights).item() == pytest.approx(5.44)
    assert BitDepthPenalty(2, 1.0, reduction="mean")(weights).item() == pytest.approx(5.44 / 3)


def test_bit_depth_penalty_step_from_profile_weight_range_and_weight_step():
    # weight_range = 2, b = 3: weight_step(3) = 1/3, so Δ = 2/3 and 2^(b-1) = 4.
    # W = [[2.0, -3.0]]: |W|/Δ = [3, 4.5] -> ReLU(3 - 4)^2 + ReLU(4.5 - 4)^2 = 0.25
    profile = IDEAL.replace(weight_bits=3, weight_range=2.0)
    assert BitDepthPenalty(profile=profile)(t([[2.0, -3.0]])).item() == pytest.approx(0.25)
    # bits= overrides the profile's: b = 2 -> Δ = 2, 2^(b-1) = 2: |W|/Δ = [1, 1.5] -> 0
    assert BitDepthPenalty(bits=2, profile=profile)(t([[2.0, -3.0]])).item() == 0.0


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        # symmetric: s = r = 2, c = 2^(b-1) - 1 = 3, Δ = 2/3; |W|/Δ = [3, 4.5] -> 0.5^2
        ("symmetric", 0.25),
        # affine: s = 2r = 4, c = 2^b - 1 = 7, Δ = 4/7; |W|/Δ = [3.5, 5.25] -> 1.25^2
        # (s * weight_step(3) = 4/3 would give [1.5, 2.25] -> 0)
        ("affine", 1.5625),
    ],
)
def test_bit_depth_penalty_step_follows_the_profile_weight_grid(grid, expected):
    profile = IDEAL.replace(weight_bits=3, weight_range=2.0, weight_quant=grid)
    assert BitDepthPenalty(profile=profile)(t([[2.0, -3.0]])).item() == pytest.approx(expected)


def test_bit_depth_penalty_on_the_affine_grid_starts_half_an_lsb_beyond_its_clip():
    # b = 4, r = 1, affine: Δ = 2/15, clip |W| = r = 7.5 Δ, penalty from 8 Δ = 16/15
    profile = IDEAL.replace(weight_bits=4, weight_range=1.0, weight_quant="affine")
    penalty = BitDepthPenalty(profile=profile)
    assert penalty(t([[1.0, -16 / 15]])).item() == pytest.approx(0.0, abs=1e-9)
    assert penalty(t([[1.2]])).item() == pytest.approx((1.2 * 7.5 - 8) ** 2)


def test_bit_depth_penalty_gradient_is_twice_the_excess_in_lsb_over_step():
    # d/dW (|W|/Δ - 2)^2 = 2 (|W|/Δ - 2) sign(W) / Δ: W = 3.2, Δ = 1 -> 2.4; W = 0.5 -> 0
    w = t([0.5, 3.2, -3.2]).requires_grad_()
    BitDepthPenalty(2, 1.0)(w).backward()
    assert w.grad.tolist() == pytest.approx([0.0, 2.4, -2.4])


def test_bit_depth_penalty_of_a_model_sums_every_layer_weight_not_the_biases():
    lin = nn.Linear(2, 1)
    analog = AnalogLinear(1, 1, profile=IDEAL)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0]]))  # (3 - 2)^2 = 1
        lin.bias.fill_(100.0)  # ignored
        analog.weight.fill_(-4.0)  # (4 - 2)^2 = 4
    assert BitDepthPenalty(2, 1.0)(nn.Sequential(lin, analog)).item() == pytest.approx(5.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits": 2},  # neither step nor profile
        {"bits": 2, "step": 1.0, "profile": IDEAL.replace(weight_range=1.0)},  # both
        {"profile": IDEAL.replace(weight_range=1.0)},  # no bits anywhere
        {"profile": IDEAL.replace(weight_bits=4)},  # per-row scale: always zero
        {"step": 1.0},  # no bits
        {"bits": 2, "step": 0.0},
        {"bits": 2, "step": float("nan")},
        {"bits": 17, "step": 1.0},
        {"bits": 2, "step": 1.0, "reduction": "max"},
    ],
)
def test_bit_depth_penalty_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        BitDepthPenalty(**kwargs)


def test_bit_depth_penalty_rejects_non_integer_bits():
    with pytest.raises(TypeError, match="bits"):
        BitDepthPenalty(bits=2.5, step=1.0)


# -- WeightKL ----------------------------------------------------------------------------


def _gaussian_kl_numeric(mu: float, sigma_q: float, sigma_p: float) -> float:
    """∫ q ln(q/p) dx by quadrature over ±12 σ_q around μ."""

    def integrand(x: float) -> float:
        log_q = -0.5 * ((x - mu) / sigma_q) ** 2 - math.log(sigma_q * math.sqrt(2 * math.pi))
        log_p = -0.5 * (x / sigma_p) ** 2 - math.log(sigma_p * math.sqrt(2 * math.pi))
        return math.exp(log_q) * (log_q - log_p)

    value, _ = integrate.quad(integrand, mu - 12 * sigma_q, mu + 12 * sigma_q, epsabs=1e-12)
    return value


NOISY = IDEAL.replace(prog_noise_std=0.03, read_noise_std=0.04)  # σ = 0.05 of g_max


def test_weight_kl_hand_value_with_per_row_scale():
    # W = [[0.5, -0.2]]: s = max|W| = 0.5; σ = sqrt(0.03² + 0.04²) = 0.05 -> σ_q = 0.025.
    # σ_p = 0.5: ln(0.5/0.025) = ln 20 = 2.9957323
    #   μ = 0.5:  2.9957323 + (0.000625 + 0.25)/0.5 - 0.5 = 2.9969823
    #   μ = -0.2: 2.9957323 + (0.000625 + 0.04)/0.5 - 0.5 = 2.5769823   sum = 5.5739646
    kl = WeightKL(NOISY, prior_std=0.5)
    w = t([[0.5, -0.2]])
    torch.testing.assert_close(kl.posterior_std(w), t([[0.025, 0.025]]))
    expected = 2 * math.log(20.0) + (0.000625 + 0.25) / 0.5 + (0.000625 + 0.04) / 0.5 - 1.0
    assert kl(w).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(5.5739646, abs=1e-7)
    assert WeightKL(NOISY, 0.5, reduction="mean")(w).item() == pytest.approx(expected / 2)


def test_weight_kl_matches_a_numeric_integral_of_q_log_q_over_p():
    w = t([[0.8, -0.3, 0.05], [0.1, 0.4, -0.6]])
    kl = WeightKL(NOISY, prior_std=0.7)
    sigma_q = kl.posterior_std(w)
    numeric = sum(
        _gaussian_kl_numeric(m, s, 0.7)
        for m, s in zip(w.flatten().tolist(), sigma_q.flatten().tolist(), strict=True)
    )
    assert kl(w).item() == pytest.approx(numeric, rel=1e-7)


def test_weight_kl_posterior_std_follows_conductance_dependent_programming_noise():
    # poly(g) = 0.01 + 0.02 g, weight_range = 1 (s = 1), read noise 0.
    # ŵ = 1:  G+ = 1, G- = 0: σ² = poly(1)² + poly(0)² = 0.03² + 0.01² = 0.001
    # ŵ = 0:  σ² = 2 poly(0)² = 0.0002;   ŵ = -0.5: poly(0.5)² + poly(0)² = 0.0004 + 0.0001
    profile = IDEAL.replace(prog_noise_poly=(0.01, 0.02), weight_range=1.0)
    sigma = WeightKL(profile, 1.0).posterior_std(t([[1.0, 0.0, -0.5]]))
    torch.testing.assert_close(sigma.square(), t([[0.001, 0.0002, 0.0005]]), rtol=1e-12, atol=0)


def test_weight_kl_read_noise_grows_with_time_since_programming():
    # σ_r(t)² = σ_r² (1 + γ ln(1 + t/t0)); t = t0 (e - 1): factor 1 + γ = 2 for γ = 1
    profile = IDEAL.replace(read_noise_std=0.04, read_noise_log_growth=1.0, weight_range=1.0)
    later = WeightKL(profile, 1.0, time_s=profile.drift_t0_seconds * (math.e - 1))
    sigma = later.posterior_std(t([[0.3]]))
    assert sigma.item() ** 2 == pytest.approx(0.04**2 * 2, rel=1e-12)


def test_weight_kl_gradient_is_mu_over_prior_variance():
    w = t([[0.5, -0.2]]).requires_grad_()
    WeightKL(NOISY, prior_std=0.5)(w).backward()
    torch.testing.assert_close(w.grad, t([[0.5 / 0.25, -0.2 / 0.25]]))


def test_weight_kl_empirical_bayes_prior_minimises_the_kl():
    # σ_p² = mean(μ² + σ_q²) makes Σ (σ_q² + μ²)/(2σ_p²) = n/2, so KL = Σ ln(σ_p/σ_q)
    w = t([[0.5, -0.2], [0.1, 0.3]])
    kl = WeightKL(NOISY)
    sigma_q = kl.posterior_std(w)
    var_p = (w.square() + sigma_q.square()).mean()
    expected = (0.5 * torch.log(var_p) - torch.log(sigma_q)).sum().item()
    assert kl(w).item() == pytest.approx(expected, rel=1e-12)
    for other in (0.5 * var_p.sqrt().item(), 2.0 * var_p.sqrt().item()):
        assert WeightKL(NOISY, prior_std=other)(w).item() > kl(w).item()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((IDEAL,), {}),  # no weight noise: σ_q = 0
        ((NOISY, 0.0), {}),
        ((NOISY, -1.0), {}),
        ((NOISY,), {"time_s": -1.0}),
        ((NOISY,), {"reduction": "none"}),
    ],
)
def test_weight_kl_rejects_bad_arguments(args, kwargs):
    with pytest.raises(ValueError):
        WeightKL(*args, **kwargs)


def test_weight_kl_rejects_a_vector_and_a_non_profile():
    with pytest.raises(ValueError, match="weight matrix"):
        WeightKL(NOISY, 1.0)(t([0.1, 0.2]))
    with pytest.raises(TypeError, match="HardwareProfile"):
        WeightKL("pcm")


# -- ActivationAlignment -----------------------------------------------------------------


def test_activation_alignment_hand_value_with_callables():
    # φ(h) = h, φ_hw(h) = 2h: (h - 2h)² = h²; h = [1, 2] -> mean(1, 4) = 2.5, sum = 5
    h = t([1.0, 2.0])
    assert ActivationAlignment(lambda x: 2 * x, nn.Identity())(h).item() == pytest.approx(2.5)
    loss = ActivationAlignment(lambda x: 2 * x, reduction="sum")
    assert loss(h, phi_h=h).item() == pytest.approx(5.0)


def test_activation_alignment_with_a_profile_uses_its_transfer_curve():
    # tanh curve, a = 1: φ_hw(0.5) = tanh(0.5)/tanh(1) = 0.46211716/0.76159416 = 0.60677613
    # φ(h) = h: (0.5 - 0.60677613)² = 0.10677613² = 0.01140114
    profile = IDEAL.replace(transfer_curve="tanh", transfer_nonlinearity=1.0)
    value = ActivationAlignment(profile, nn.Identity())(t([0.5])).item()
    assert value == pytest.approx((0.5 - math.tanh(0.5) / math.tanh(1.0)) ** 2, rel=1e-12)
    assert value == pytest.approx(0.01140114, abs=1e-8)


def test_activation_alignment_trains_a_learned_activation_module():
    act = nn.PReLU(init=0.5).double()
    loss = ActivationAlignment(torch.relu, act)
    assert list(loss.parameters()) == [act.weight]
    loss(t([-1.0, 2.0])).backward()
    # (0.5·(-1) - 0)² -> d/da = 2 (a·(-1)) (-1) = 2a = 1, mean over 2 -> 0.5
    assert act.weight.grad.item() == pytest.approx(0.5)


def test_activation_alignment_rejects_bad_input():
    with pytest.raises(TypeError, match="hw_activation"):
        ActivationAlignment("tanh")
    with pytest.raises(ValueError, match="phi_h"):
        ActivationAlignment(torch.tanh)(t([1.0]))
    with pytest.raises(ValueError, match="shape"):
        ActivationAlignment(torch.tanh)(t([1.0]), phi_h=t([1.0, 2.0]))


# -- MomentMatching ----------------------------------------------------------------------


def test_moment_matching_hand_value_over_two_layers():
    # layer 1: net [[0],[2]] -> μ = 1, σ = 1 (population); hw [[1],[1]] -> μ = 1, σ = 0
    #          gap 0 + 1 = 1
    # layer 2: net [[1,2],[3,4]] -> μ = (2,3), σ = (1,1); hw zeros(3,2) -> μ = σ = 0
    #          gap 4 + 9 + 1 + 1 = 15           total 16
    net = [t([[0.0], [2.0]]), t([[1.0, 2.0], [3.0, 4.0]])]
    hw = [t([[1.0], [1.0]]), torch.zeros(3, 2, dtype=F64)]
    assert MomentMatching()(net, hw).item() == pytest.approx(16.0, abs=1e-12)


def test_moment_matching_matches_per_feature_over_conv_shaped_activations():
    net = torch.randn(8, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert MomentMatching()([net], [net.clone()]).item() == 0.0
    shifted = MomentMatching()([net + 0.5], [net])
    assert shifted.item() == pytest.approx(0.25 * 18)  # only the mean moves, 18 features


def test_moment_matching_gradient_is_finite_for_constant_features():
    net = t([[1.0, 0.0], [1.0, 2.0]]).requires_grad_()
    hw = t([[5.0, 5.0], [5.0, 5.0]]).requires_grad_()
    MomentMatching()([net], [hw]).backward()
    assert torch.isfinite(net.grad).all() and torch.isfinite(hw.grad).all()


@pytest.mark.parametrize(
    ("net", "hw", "error"),
    [
        ([t([[1.0], [2.0]])], [], ValueError),
        ([t([[1.0], [2.0]])], [t([[1.0, 2.0], [3.0, 4.0]])], ValueError),
        ([t([[1.0]])], [t([[1.0], [2.0]])], ValueError),
        (t([[1.0], [2.0]]), t([[1.0], [2.0]]), TypeError),
    ],
)
def test_moment_matching_rejects_mismatched_layers(net, hw, error):
    with pytest.raises(error):
        MomentMatching()(net, hw)


# -- JSCalibration -----------------------------------------------------------------------


def test_js_of_identical_samples_is_zero():
    x = torch.linspace(-1, 1, 50, dtype=F64)
    assert JSCalibration()(x, x.clone()).item() == 0.0


def test_js_of_disjoint_samples_is_ln_2():
    # 1.8 apart with bandwidth = bin width = 1/16: kernel overlap exp(-0.5·28.8²) = 0
    a = torch.full((20,), -0.9, dtype=F64)
    b = torch.full((30,), 0.9, dtype=F64)
    assert JSCalibration(bins=32, range=(-1.0, 1.0))(a, b).item() == pytest.approx(math.log(2))


def test_js_hand_value_with_narrow_kernels():
    # bins = 2 on (0, 2), centres 0.5 and 1.5, h = 0.05 (overlap exp(-200) ≈ 0):
    # P = [1, 0], Q = [0.5, 0.5], M = [0.75, 0.25]
    # KL(P‖M) = ln(1/0.75) = 0.2876821; KL(Q‖M) = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.1438410
    # JS = (0.2876821 + 0.1438410)/2 = 0.2157616
    js = JSCalibration(bins=2, range=(0.0, 2.0), bandwidth=0.05)
    value = js(t([0.5, 0.5]), t([0.5, 1.5])).item()
    expected = 0.5 * (math.log(1 / 0.75) + 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0))
    assert value == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.2157616, abs=1e-7)


def test_js_soft_histogram_sums_to_one_and_clamps_outliers_to_edge_bins():
    js = JSCalibration(bins=4, range=(0.0, 1.0))
    p = js.histogram(t([0.1, 0.4, 0.9, 5.0, -3.0]))
    assert p.sum().item() == pytest.approx(1.0)
    assert js.histogram(t([50.0])).tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0], abs=1e-12)


def test_js_is_bounded_and_its_gradient_is_finite_and_reduces_it():
    gen = torch.Generator().manual_seed(3)
    learned = (0.3 * torch.randn(200, generator=gen, dtype=F64) + 0.4).requires_grad_()
    hardware = 0.3 * torch.randn(200, generator=gen, dtype=F64) - 0.2
    js = JSCalibration(bins=16, range=(-1.5, 1.5))
    value = js(learned, hardware)
    assert 0.0 < value.item() < math.log(2)
    value.backward()
    assert torch.isfinite(learned.grad).all()
    with torch.no_grad():
        stepped = js(learned - 0.05 * learned.grad / learned.grad.abs().max(), hardware)
    assert stepped.item() < value.item()


def test_js_gradient_is_finite_with_empty_bins():
    a = torch.full((4,), -0.9, dtype=torch.float32, requires_grad=True)
    b = torch.full((4,), 0.9, dtype=torch.float32, requires_grad=True)
    JSCalibration(bins=8, range=(-1.0, 1.0), bandwidth=0.01)(a, b).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bins": 1},
        {"bins": 4.0},
        {"range": (1.0, 1.0)},
        {"range": (0.0, float("inf"))},
        {"bandwidth": 0.0},
    ],
)
def test_js_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        JSCalibration(**kwargs)


def test_js_rejects_empty_samples():
    with pytest.raises(ValueError, match="empty"):
        JSCalibration()(torch.zeros(0), torch.zeros(3))


# -- Sparsity ----------------------------------------------------------------------------


def test_sparsity_l1_hand_value():
    # |1| + |-2| + |0| + |3| = 6; mean over 4 elements = 1.5
    w = t([[1.0, -2.0], [0.0, 3.0]])
    assert Sparsity()(w).item() == pytest.approx(1.5)
    assert Sparsity(reduction="sum")(w).item() == pytest.approx(6.0)


def test_sparsity_group_lasso_sums_row_norms():
    # rows [1, -2] and [0, 3]: sqrt(5) + 3 = 5.2360680; mean over 2 rows = 2.6180340
    w = t([[1.0, -2.0], [0.0, 3.0]])
    assert Sparsity("group", reduction="sum")(w).item() == pytest.approx(math.sqrt(5) + 3)
    assert Sparsity("group")(w).item() == pytest.approx((math.sqrt(5) + 3) / 2)


def test_sparsity_group_lasso_gradient_of_a_zero_row_is_zero():
    w = t([[0.0, 0.0], [3.0, 4.0]]).requires_grad_()
    Sparsity("group", reduction="sum")(w).backward()
    # d‖r‖/dr = r/‖r‖: [3, 4]/5; zero row -> 0
    torch.testing.assert_close(w.grad, t([[0.0, 0.0], [0.6, 0.8]]))


def test_sparsity_of_a_conv_model_treats_each_filter_as_a_row():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]]))
    # filter norms 2 and 0
    assert Sparsity("group", reduction="sum")(conv).item() == pytest.approx(2.0)


def test_sparsity_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        Sparsity("l2")


# -- shared pieces: Gaussian KL, discrete JS ---------------------------------------------


def test_gaussian_kl_hand_value_and_torch_distributions_reference():
    # KL(N(1, 2²) ‖ N(0, 1)) = ln(1/2) + (4 + 1)/2 − 1/2 = 2 − ln 2
    one = gaussian_kl(t(1.0), t(2.0), t(0.0), t(1.0))
    assert one.item() == pytest.approx(2.0 - math.log(2.0), abs=1e-12)
    gen = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(2, 50, generator=gen, dtype=F64)
    std_q, std_p = 0.1 + torch.rand(2, 50, generator=gen, dtype=F64)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_q, std_q), torch.distributions.Normal(mu_p, std_p)
    )
    torch.testing.assert_close(gaussian_kl(mu_q, std_q, mu_p, std_p), reference)


def test_js_divergence_matches_scipy_and_its_bounds():
    from scipy.spatial.distance import jensenshannon

    gen = torch.Generator().manual_seed(1)
    p, q = torch.rand(2, 12, generator=gen, dtype=F64)
    p, q = p / p.sum(), q / q.sum()
    assert js_divergence(p, q).item() == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-10)
    assert js_divergence(p, p).item() == pytest.approx(0.0, abs=1e-15)
    disjoint = js_divergence(t([0.5, 0.5, 0.0, 0.0]), t([0.0, 0.0, 0.25, 0.75]))
    assert disjoint.item() == pytest.approx(math.log(2.0), abs=1e-12)
