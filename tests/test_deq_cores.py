"""Analog equilibrium cores: contractivity projection, cores, interface converters and
regularisers, checked against exact norms, hand formulas and finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analogtorch.deq.contractivity import (
    contraction_factor,
    operator_norm,
    project_contractive_,
)
from analogtorch.deq.cores import AnalogCore, CCCore, CircuitSaturation, PICore
from analogtorch.deq.interface import Converter
from analogtorch.deq.regularizers import (
    RegularizerWeights,
    core_energy_nj,
    feedback_sparsity,
    jacobian_penalty,
)
from analogtorch.hardware.profile import HardwareProfile

F64 = torch.float64
IDEAL = HardwareProfile.preset("ideal")


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Layers draw their initial weights from the global RNG: make every test reproducible."""
    torch.manual_seed(0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _max_row_l1(w: torch.Tensor) -> float:
    """‖W‖_∞ written out: the largest sum of |entries| over the rows."""
    flat = w.reshape(w.shape[0], -1)
    return max(sum(abs(float(v)) for v in row) for row in flat)


def _empirical_lipschitz(core, u, g, *, n=4000, scale=1.0, ord=2):
    """Largest ‖f(z1,u) − f(z2,u)‖ / ‖z1 − z2‖ over random pairs (close and far apart)."""
    w = core.width
    z1 = scale * torch.randn(n, w, generator=g, dtype=F64)
    # half the pairs far apart, half infinitesimally close (probes the largest local slope)
    step = torch.randn(n, w, generator=g, dtype=F64)
    step[: n // 2] *= 1e-5
    z2 = z1 + step
    uu = u.expand(n, w)
    with torch.no_grad():
        num = torch.linalg.vector_norm(core(z1, uu) - core(z2, uu), ord=ord, dim=1)
    return float((num / torch.linalg.vector_norm(step, ord=ord, dim=1)).max())


def _big_weight_(core: AnalogCore, seed: int, gain: float = 3.0) -> None:
    with torch.no_grad():
        core.feedback.weight.copy_(
            gain * torch.randn(core.feedback.weight.shape, generator=_gen(seed))
        )


# ---------------------------------------------------------------------------------------
# contractivity.py
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (3, 8)])
def test_spectral_operator_norm_is_the_largest_singular_value(shape):
    w = torch.randn(shape, generator=_gen(1), dtype=F64)
    expected = torch.linalg.svdvals(w)[0]
    assert float(operator_norm(w, "spectral")) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (4, 2, 3, 3)])
def test_inf_operator_norm_is_the_largest_row_l1_norm(shape):
    w = torch.randn(shape, generator=_gen(2), dtype=F64)
    assert float(operator_norm(w, "inf")) == pytest.approx(_max_row_l1(w), rel=1e-12)


def test_operator_norm_rejects_an_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        operator_norm(torch.eye(3), "fro")


def test_spectral_projection_meets_the_bound_and_returns_the_norm_before():
    w = 4.0 * torch.randn(6, 6, generator=_gen(3), dtype=F64)
    before = float(torch.linalg.svdvals(w)[0])
    direction = w / w.norm()
    returned = project_contractive_(w, 0.7, "spectral")
    assert returned == pytest.approx(before, rel=1e-12)
    assert float(torch.linalg.svdvals(w)[0]) == pytest.approx(0.7, rel=1e-12)
    # a uniform rescaling: the direction of W is kept
    torch.testing.assert_close(w / w.norm(), direction, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("norm", ["spectral", "inf"])
def test_projection_leaves_an_already_contractive_weight_untouched(norm):
    w = torch.randn(5, 4, generator=_gen(4), dtype=F64)
    w *= 0.5 / _max_row_l1(w)  # ‖W‖₂ ≤ ‖W‖_F ≤ ... small either way
    assert float(torch.linalg.svdvals(w)[0]) < 0.9
    original = w.clone()
    project_contractive_(w, 0.9, norm)
    assert torch.equal(w, original)


def test_inf_projection_rescales_only_the_offending_rows():
    w = torch.randn(6, 5, generator=_gen(5), dtype=F64)
    l1 = w.abs().sum(dim=1)
    bound = float(l1.median())
    offending = l1 > bound
    assert offending.any() and (~offending).any()
    original = w.clone()
    returned = project_contractive_(w, bound, "inf")
    assert returned == pytest.approx(float(l1.max()), rel=1e-12)
    assert _max_row_l1(w) <= bound * (1 + 1e-12)
    # rows within the bound are bit-identical, rows above are scaled onto it exactly
    assert torch.equal(w[~offending], original[~offending])
    new_l1 = w[offending].abs().sum(dim=1)
    torch.testing.assert_close(new_l1, torch.full_like(new_l1, bound), rtol=1e-12, atol=0)
    ratio = w[offending] / original[offending]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-12, atol=0)


def test_inf_projection_also_meets_the_bound_on_a_non_contiguous_weight():
    w = 3.0 * torch.randn(4, 3, 2, 2, generator=_gen(6), dtype=F64)
    w = w.to(memory_format=torch.channels_last)
    assert not w.is_contiguous()
    project_contractive_(w, 1.0, "inf")
    assert _max_row_l1(w) <= 1.0 + 1e-12


@pytest.mark.parametrize("bound", [0.0, -1.0, math.nan])
def test_projection_rejects_a_non_positive_bound(bound):
    with pytest.raises(ValueError, match="bound"):
        project_contractive_(torch.eye(3), bound)


@pytest.mark.parametrize("norm", ["spectral", "inf"])
def test_projection_rejects_a_weight_with_nan(norm):
    w = torch.eye(3)
    w[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        project_contractive_(w, 0.5, norm)


def test_projection_rejects_an_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        project_contractive_(torch.eye(3), 0.5, "fro")


def test_contraction_factor_is_lipschitz_times_operator_norm():
    w = torch.randn(4, 4, generator=_gen(7), dtype=F64)
    assert contraction_factor(w, 1.7, "spectral") == pytest.approx(
        1.7 * float(torch.linalg.svdvals(w)[0]), rel=1e-12
    )
    assert contraction_factor(w, 0.5, "inf") == pytest.approx(0.5 * _max_row_l1(w), rel=1e-12)


# ---------------------------------------------------------------------------------------
# cores.py
# ---------------------------------------------------------------------------------------


def test_ideal_tanh_core_is_exactly_tanh_of_wz_plus_u():
    core = AnalogCore(5, IDEAL, contraction=0.8).double()
    g = _gen(8)
    z, u = torch.randn(3, 5, generator=g, dtype=F64), torch.randn(3, 5, generator=g, dtype=F64)
    expected = torch.tanh(z @ core.feedback.weight.detach().T + u)
    torch.testing.assert_close(core(z, u).detach(), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_projected_core_empirical_lipschitz_ratio_meets_the_contraction(scale):
    core = AnalogCore(6, IDEAL, activation="tanh", contraction=0.8).double()
    _big_weight_(core, seed=9)
    u0 = torch.zeros(1, 6, dtype=F64)
    # the test can fail: the unprojected map is expansive
    assert _empirical_lipschitz(core, u0, _gen(10), scale=scale) > 1.0
    core.project_()
    u = 0.3 * torch.randn(1, 6, generator=_gen(11), dtype=F64)
    ratio = _empirical_lipschitz(core, u, _gen(12), scale=scale)
    assert ratio <= 0.8 + 1e-6


def test_projected_core_contraction_is_tight_along_the_top_singular_vector():
    """Near z = 0, u = 0 the map is ≈ W z, so the ratio along v₁ reaches ‖W‖₂ = γ."""
    core = AnalogCore(6, IDEAL, contraction=0.8).double()
    _big_weight_(core, seed=13)
    core.project_()
    _, _, vh = torch.linalg.svd(core.feedback.weight.detach())
    d = 1e-6 * vh[0].reshape(1, -1)
    zero = torch.zeros(1, 6, dtype=F64)
    with torch.no_grad():
        ratio = float((core(d, zero) - core(zero, zero)).norm() / d.norm())
    assert ratio == pytest.approx(0.8, rel=1e-6)


def test_contraction_bound_after_projecting_a_large_weight_equals_gamma():
    core = AnalogCore(8, IDEAL, contraction=0.8).double()
    _big_weight_(core, seed=14)
    before = core.project_()
    assert before > 0.8
    assert core.contraction_bound() == pytest.approx(0.8, rel=1e-9)
    assert float(torch.linalg.svdvals(core.feedback.weight.detach())[0]) == pytest.approx(
        0.8, rel=1e-9
    )


def test_core_is_contractive_right_after_construction():
    core = AnalogCore(16, IDEAL, contraction=0.5)
    assert core.contraction_bound() <= 0.5 + 1e-6


def test_inf_norm_core_is_a_contraction_in_the_max_norm():
    core = AnalogCore(6, IDEAL, contraction=0.7, norm="inf").double()
    _big_weight_(core, seed=15)
    core.project_()
    assert _max_row_l1(core.feedback.weight.detach()) <= 0.7 * (1 + 1e-12)
    u = torch.zeros(1, 6, dtype=F64)
    ratio = _empirical_lipschitz(core, u, _gen(16), scale=0.1, ord=math.inf)
    assert ratio <= 0.7 + 1e-6


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"contraction": 1.0}, ValueError),
        ({"contraction": 0.0}, ValueError),
        ({"norm": "fro"}, ValueError),
        ({"activation": "sigmoid"}, ValueError),
        ({"activation": nn.Tanh()}, TypeError),  # no lipschitz attribute
    ],
)
def test_core_rejects_invalid_arguments(kwargs, error):
    with pytest.raises(error):
        AnalogCore(4, IDEAL, **kwargs)


def test_core_rejects_zero_width():
    with pytest.raises(ValueError, match="width"):
        AnalogCore(0, IDEAL)


def test_circuit_saturation_matches_the_hand_formula():
    a, y_sat = 1.5, 2.0
    curve = CircuitSaturation(IDEAL, saturation=y_sat, nonlinearity=a)
    y = torch.linspace(-7.0, 7.0, 301, dtype=F64)
    expected = torch.tensor(
        [y_sat * math.tanh(a * v / y_sat) / math.tanh(a) for v in y.tolist()], dtype=F64
    )
    torch.testing.assert_close(curve(y), expected, rtol=1e-14, atol=1e-14)
    rails = curve(torch.tensor([-y_sat, y_sat], dtype=F64))
    torch.testing.assert_close(rails, torch.tensor([-y_sat, y_sat], dtype=F64))


def test_circuit_saturation_lipschitz_is_the_largest_finite_difference_slope():
    a, y_sat = 1.5, 2.0
    curve = CircuitSaturation(IDEAL, saturation=y_sat, nonlinearity=a)
    assert curve.lipschitz == pytest.approx(a / math.tanh(a), rel=1e-15)
    y = torch.linspace(-3 * y_sat, 3 * y_sat, 2001, dtype=F64)  # includes 0
    h = 1e-6
    slopes = (curve(y + h) - curve(y - h)) / (2 * h)
    assert float(slopes.max()) == pytest.approx(curve.lipschitz, rel=1e-8)
    assert float(slopes[y.abs().argmin()]) == pytest.approx(curve.lipschitz, rel=1e-8)


@pytest.mark.parametrize("kwargs", [{"saturation": 0.0}, {"nonlinearity": -1.0}])
def test_circuit_saturation_rejects_non_positive_parameters(kwargs):
    with pytest.raises(ValueError):
        CircuitSaturation(IDEAL, **kwargs)


TANH_DEVICE = IDEAL.replace(transfer_curve="tanh", transfer_nonlinearity=2.0)


def test_cc_core_takes_the_nonlinearity_of_a_tanh_profile():
    core = CCCore(4, TANH_DEVICE, nonlinearity=0.5)  # the profile's a wins
    assert core.activation.nonlinearity == 2.0
    assert core.activation_lipschitz == pytest.approx(2.0 / math.tanh(2.0), rel=1e-15)
    # the circuit curve C and the crossbar's input curve both have slope up to a / tanh(a)
    assert core.weight_bound() == pytest.approx(core.contraction * (math.tanh(2.0) / 2.0) ** 2)


def test_cc_core_on_a_linear_profile_takes_the_given_nonlinearity():
    core = CCCore(4, IDEAL, nonlinearity=0.5, saturation=1.5)
    assert core.activation.nonlinearity == 0.5
    assert core.activation.saturation == 1.5


def test_cc_core_rejects_an_activation():
    with pytest.raises(TypeError):
        CCCore(4, IDEAL, activation="tanh")


def test_projected_cc_core_on_the_ideal_profile_is_a_contraction():
    core = CCCore(6, IDEAL, saturation=2.0, nonlinearity=1.5, contraction=0.8).double()
    _big_weight_(core, seed=17)
    core.project_()
    assert core.contraction_bound() == pytest.approx(0.8, rel=1e-9)
    u = torch.zeros(1, 6, dtype=F64)
    ratio = _empirical_lipschitz(core, u, _gen(18), scale=0.05)
    assert 0.75 < ratio <= 0.8 + 1e-6  # slope a/tanh(a) at 0 makes the bound nearly tight


def test_projected_cc_core_on_a_nonlinear_device_profile_is_a_contraction():
    core = CCCore(6, TANH_DEVICE, contraction=0.9).double().eval()
    _big_weight_(core, seed=19)
    core.project_()
    assert core.contraction_bound() <= 0.9 + 1e-9
    u = torch.zeros(1, 6, dtype=F64)
    assert _empirical_lipschitz(core, u, _gen(20), scale=0.05) <= 0.9 + 1e-6


class MatrixPhysics(nn.Module):
    """P(z, u) = M z with Lipschitz constant ‖M‖₂."""

    def __init__(self, m: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("m", m)
        self.lipschitz = float(torch.linalg.svdvals(m)[0])

    def forward(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return z @ self.m.T


def test_pi_core_weight_bound_leaves_room_for_the_physics_term():
    m = 0.3 * torch.randn(5, 5, generator=_gen(21), dtype=F64)
    m *= 0.35 / torch.linalg.svdvals(m)[0]
    core = PICore(5, IDEAL, MatrixPhysics(m), contraction=0.8).double()
    assert core.physics_lipschitz() == pytest.approx(0.35, rel=1e-12)
    assert core.weight_bound() == pytest.approx(0.8 - 0.35, rel=1e-12)
    _big_weight_(core, seed=22)
    core.project_()
    assert float(torch.linalg.svdvals(core.feedback.weight.detach())[0]) == pytest.approx(
        0.45, rel=1e-9
    )
    assert core.contraction_bound() == pytest.approx(0.8, rel=1e-9)
    # the whole map tanh(W z + M z + u) is then a 0.8-contraction
    u = torch.zeros(1, 5, dtype=F64)
    assert _empirical_lipschitz(core, u, _gen(23), scale=0.05) <= 0.8 + 1e-6


def test_pi_core_adds_the_physics_term_inside_the_activation():
    m = 0.1 * torch.eye(3, dtype=F64)
    core = PICore(3, IDEAL, MatrixPhysics(m), contraction=0.8).double()
    g = _gen(24)
    z, u = torch.randn(2, 3, generator=g, dtype=F64), torch.randn(2, 3, generator=g, dtype=F64)
    w = core.feedback.weight.detach()
    torch.testing.assert_close(core(z, u).detach(), torch.tanh(z @ w.T + 0.1 * z + u))


def test_pi_core_with_an_unreachable_contraction_raises():
    m = 0.9 * torch.eye(4, dtype=F64)  # ‖M‖ = 0.9 ≥ γ = 0.8
    with pytest.raises(ValueError, match="unreachable"):
        PICore(4, IDEAL, MatrixPhysics(m), contraction=0.8)


def test_pi_core_rejects_a_non_module_physics():
    with pytest.raises(TypeError):
        PICore(4, IDEAL, lambda z, u: z)


PCM = HardwareProfile.preset("pcm")


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: AnalogCore(4, PCM), 1.0),
        (lambda: CCCore(4, PCM, saturation=2.5), 2.5),
    ],
)
def test_feedback_dac_range_is_the_state_range_not_the_zero_initial_state(make, expected):
    core = make().eval()
    z0 = torch.zeros(3, 4)
    u = torch.randn(3, 4, generator=_gen(25))
    with torch.no_grad():
        out = core(z0, u)
        core(out, u)
    assert torch.isfinite(out).all()
    assert float(core.feedback.input_range.detach()) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------
# interface.py
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_converter_output_takes_exactly_two_to_the_bits_levels(bits):
    conv = Converter(bits)
    conv(torch.tensor([-2.0, 0.5, 2.0], dtype=F64))  # full scale r = 2
    sweep = torch.linspace(-5.0, 5.0, 20001, dtype=F64)
    out = conv(sweep).detach()
    levels = out.unique()
    assert levels.numel() == 2**bits
    step = 2.0 / 2 ** (bits - 1)
    torch.testing.assert_close(
        levels, step * torch.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)).double()
    )


def test_converter_error_inside_the_range_is_at_most_half_a_step():
    bits, r = 6, 1.5
    conv = Converter(bits)
    conv(torch.tensor([r], dtype=F64))
    step = r / 2 ** (bits - 1)
    v = torch.linspace(-r, r - step, 5001, dtype=F64)
    assert float((conv(v).detach() - v).abs().max()) <= step / 2 + 1e-12


def test_converter_full_scale_is_set_by_the_first_batch_only():
    conv = Converter(4)
    conv(torch.tensor([0.3, -1.25, 0.7]))
    assert float(conv.full_scale.detach()) == pytest.approx(1.25)
    conv(torch.tensor([10.0]))
    assert float(conv.full_scale.detach()) == pytest.approx(1.25)
    assert bool(conv.initialized)


def test_ideal_converter_is_the_identity_with_unit_gradient():
    conv = Converter(None)
    v = torch.randn(50, generator=_gen(26), dtype=F64, requires_grad=True)
    out = conv(v)
    assert torch.equal(out, v)
    out.sum().backward()
    assert torch.equal(v.grad, torch.ones_like(v))


def test_converter_gradient_is_straight_through_inside_and_zero_outside_the_range():
    conv = Converter(4)
    conv(torch.tensor([2.0], dtype=F64))  # r = 2, codes -8..7, range [-2, 1.75]
    inside = torch.tensor([-1.9, -0.37, 0.0, 0.61, 1.6], dtype=F64)
    outside = torch.tensor([-3.0, 2.5, 10.0], dtype=F64)
    v = torch.cat([inside, outside]).requires_grad_(True)
    conv(v).sum().backward()
    torch.testing.assert_close(v.grad[:5], torch.ones(5, dtype=F64))
    torch.testing.assert_close(v.grad[5:], torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("bits", [0, 17])
def test_converter_rejects_out_of_range_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        Converter(bits)


# ---------------------------------------------------------------------------------------
# regularizers.py
# ---------------------------------------------------------------------------------------


def _small_core_and_state(seed: int = 27):
    core = AnalogCore(5, IDEAL, contraction=0.8).double()
    _big_weight_(core, seed=seed, gain=1.0)
    core.project_()
    g = _gen(seed + 1)
    z = 0.5 * torch.randn(8, 5, generator=g, dtype=F64)
    u = torch.randn(8, 5, generator=g, dtype=F64)
    return core, z, u


def test_hutchinson_jacobian_penalty_averages_to_the_exact_frobenius_norm():
    core, z, u = _small_core_and_state()
    with torch.no_grad():
        jac = torch.autograd.functional.jacobian(lambda s: core(s, u), z)  # (8,5,8,5)
    exact = float(jac.square().sum()) / z.numel()
    # the exact per-sample Jacobian is diag(1 − tanh²) W: cross-check the reference itself
    w = core.feedback.weight.detach()
    slope = 1 - torch.tanh(z @ w.T + u).square()
    by_hand = float(sum((slope[b, :, None] * w).square().sum() for b in range(8))) / z.numel()
    assert exact == pytest.approx(by_hand, rel=1e-12)
    estimates = [
        float(jacobian_penalty(core, z, u, generator=_gen(1000 + k)).detach()) for k in range(1500)
    ]
    assert sum(estimates) / len(estimates) == pytest.approx(exact, rel=0.04)


def test_jacobian_penalty_gradient_matches_finite_differences():
    core, z, u = _small_core_and_state(seed=30)
    w = core.feedback.weight
    penalty = jacobian_penalty(core, z, u, generator=_gen(5))
    (grad,) = torch.autograd.grad(penalty, w)
    direction = torch.randn(w.shape, generator=_gen(6), dtype=F64)
    eps = 1e-6
    with torch.no_grad():
        w.add_(eps * direction)
        plus = float(jacobian_penalty(core, z, u, generator=_gen(5)))
        w.sub_(2 * eps * direction)
        minus = float(jacobian_penalty(core, z, u, generator=_gen(5)))
        w.add_(eps * direction)
    fd = (plus - minus) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(fd, rel=1e-6)


def test_feedback_sparsity_is_the_mean_absolute_feedback_weight():
    core = AnalogCore(3, IDEAL).double()
    w = torch.tensor([[0.1, -0.2, 0.0], [0.3, 0.0, -0.05], [0.0, 0.15, -0.1]], dtype=F64)
    with torch.no_grad():
        core.feedback.weight.copy_(w)
    assert float(feedback_sparsity(core).detach()) == pytest.approx(0.9 / 9, rel=1e-12)


ENERGY_PROFILE = IDEAL.replace(
    dac_bits=4,
    adc_bits=6,
    tile_rows=2,
    tile_cols=2,
    t_read_seconds=50e-9,
    v_read_volts=0.3,
    g_max_siemens=10e-6,
    energy={
        "devices_per_weight": 4,
        "adc_fom_model": "walden",
        "adc_walden_fom_j": 20e-15,
        "adc_enob_loss": 0.5,
        "dac_energy_per_level_j": 2e-15,
    },
)
ENERGY_W = [[0.4, -0.2, 0.1], [0.0, 0.3, -0.6], [0.25, 0.25, -0.5]]
ENERGY_Z = [[0.5, -1.5, 0.2], [-0.1, 0.5, 0.0]]  # DAC full scale 1: -1.5 saturates at -1


def _energy_core(encoding: str) -> AnalogCore:
    profile = ENERGY_PROFILE.replace(energy={"input_encoding": encoding})
    core = AnalogCore(3, profile).double()
    with torch.no_grad():
        core.feedback.weight.copy_(torch.tensor(ENERGY_W, dtype=F64))
    return core


@pytest.mark.parametrize(
    "encoding, weighted_activity",
    [
        # ĝ = |W| / row max · (4 devices / 2); column sums of ĝ = (3, 3, 4.5)
        ("pwm", 3 * 0.3 + 3 * 0.75 + 4.5 * 0.1),  # E|x| = (0.3, 0.75, 0.1)
        ("amplitude", 3 * 0.13 + 3 * 0.625 + 4.5 * 0.02),  # E x² = (0.13, 0.625, 0.02)
    ],
)
def test_core_energy_matches_the_docstring_formula_by_hand(encoding, weighted_activity):
    core = _energy_core(encoding)
    z = torch.tensor(ENERGY_Z, dtype=F64)
    crossbar_j = 50e-9 * 0.3**2 * 10e-6 * weighted_activity
    # 3 rows × 2 column tiles DAC conversions, 3 columns × 2 row tiles ADC conversions
    converters_j = 6 * 2e-15 * 2**4 + 6 * 20e-15 * 2 ** (6 - 0.5)
    expected_nj = 7 * (crossbar_j + converters_j) * 1e9
    assert float(core_energy_nj(core, z, 7).detach()) == pytest.approx(expected_nj, rel=1e-6)


def test_core_energy_is_linear_in_the_iterations():
    core = _energy_core("pwm")
    z = torch.tensor(ENERGY_Z, dtype=F64)
    e1, e5 = float(core_energy_nj(core, z, 1).detach()), float(core_energy_nj(core, z, 5).detach())
    assert e1 > 0
    assert e5 == pytest.approx(5 * e1, rel=1e-6)
    assert float(core_energy_nj(core, z, 0).detach()) == 0.0


def test_core_energy_gradient_reaches_the_feedback_weight():
    core = _energy_core("pwm")
    z = torch.tensor(ENERGY_Z, dtype=F64)
    (grad,) = torch.autograd.grad(core_energy_nj(core, z, 7), core.feedback.weight)
    # W[0,1] = -0.2 is not its row's max, so ∂ĝ₀₁/∂W₀₁ = (d/2) sign(W₀₁) / s₀ exactly,
    # and it multiplies the activity E|x₁| = 0.75 of row 1
    expected = 7 * 1e9 * 50e-9 * 0.3**2 * 10e-6 * 2.0 * (-1.0 / 0.4) * 0.75
    assert float(grad[0, 1]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["sparsity", "jacobian", "precision", "energy"])
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_regularizer_weights_reject_negative_or_non_finite_values(name, value):
    with pytest.raises(ValueError, match=name):
        RegularizerWeights(**{name: value})


def test_regularizer_weights_are_active_when_any_weight_is_positive():
    assert not RegularizerWeights().active
    assert RegularizerWeights(energy=1e-3).active
