"""Hybrid analog–digital DEQ: construction, implicit gradients against finite differences,
contractivity after optimizer steps, profile switching and deployment on a chip."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from analogtorch.deq import SolverOptions
from analogtorch.deq.cores import AnalogCore, CCCore, PICore
from analogtorch.deq.hybrid import HybridDEQ, build_hybrid_deq
from analogtorch.deq.training import train_hybrid
from analogtorch.hardware.chip import Chip
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.quantized import QuantizedLinear

F64 = torch.float64
IDEAL = HardwareProfile.preset("ideal")
PCM = HardwareProfile.preset("pcm")
TIGHT = SolverOptions(tol=1e-12, max_iter=500, mode="absolute")


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Layers draw their initial weights from the global RNG: make every test reproducible."""
    torch.manual_seed(0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class MatrixPhysics(nn.Module):
    """P(z, u) = M z, Lipschitz ‖M‖₂."""

    def __init__(self, m: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("m", m)
        self.lipschitz = float(torch.linalg.svdvals(m)[0])

    def forward(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return z @ self.m.T


def _build(kind: str, profile=IDEAL, **kwargs) -> HybridDEQ:
    if kind == "pi":
        kwargs["physics"] = MatrixPhysics(0.2 * torch.eye(6))
    return build_hybrid_deq(5, 3, profile, width=6, kind=kind, **kwargs)


@pytest.mark.parametrize("kind, core_type", [("plain", AnalogCore), ("cc", CCCore), ("pi", PICore)])
def test_each_core_kind_builds_and_maps_a_batch_to_the_output_shape(kind, core_type):
    model = _build(kind)
    assert type(model.core) is core_type
    x = torch.randn(7, 5, generator=_gen(0))
    y = model(x)
    assert y.shape == (7, 3)
    assert model.last_state.shape == (7, 6)
    assert model.last_injection.shape == (7, 6)
    assert torch.isfinite(y).all()
    assert model.core.contraction_bound() <= 0.9 + 1e-6


def test_images_are_flattened_by_the_encoder():
    model = build_hybrid_deq(12, 2, IDEAL, width=4)
    assert model(torch.randn(3, 1, 3, 4, generator=_gen(1))).shape == (3, 2)


@pytest.mark.parametrize("kind", ["plain", "cc", "pi"])
def test_ideal_hybrid_output_is_the_head_of_a_fixed_point_of_the_core(kind):
    model = _build(kind, digital_bits=None, forward_options=TIGHT).double().eval()
    x = torch.randn(4, 5, generator=_gen(2), dtype=F64)
    with torch.no_grad():
        y = model(x)
        z, u = model.last_state, model.last_injection
        torch.testing.assert_close(u, model.encoder(x), rtol=0, atol=0)
        torch.testing.assert_close(model.core(z, u), z, rtol=0, atol=1e-11)
        torch.testing.assert_close(y, model.head(z), rtol=0, atol=0)


def test_pi_kind_needs_physics_and_only_pi_takes_it():
    with pytest.raises(ValueError, match="physics"):
        build_hybrid_deq(5, 3, IDEAL, width=6, kind="pi")
    with pytest.raises(ValueError, match="physics"):
        build_hybrid_deq(5, 3, IDEAL, width=6, physics=MatrixPhysics(torch.eye(6)))


@pytest.mark.parametrize("kwargs", [{"kind": "lstm"}, {"solver": "newton"}])
def test_builder_rejects_unknown_kind_or_solver(kwargs):
    with pytest.raises(ValueError):
        build_hybrid_deq(5, 3, IDEAL, width=6, **kwargs)


def test_hybrid_rejects_a_core_that_is_not_an_analog_core():
    with pytest.raises(TypeError, match="AnalogCore"):
        HybridDEQ(nn.Identity(), nn.Linear(2, 2), nn.Identity(), lambda f, z, o: (z, None))


def test_builder_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = build_hybrid_deq(5, 3, PCM, width=6, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_hybrid_deq(5, 3, PCM, width=6, seed=7)
    c = build_hybrid_deq(5, 3, PCM, width=6, seed=8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.core.feedback.weight, c.core.feedback.weight)


def test_interface_converters_take_the_profile_resolutions():
    model = build_hybrid_deq(5, 3, PCM, width=6)
    assert (model.dac.bits, model.adc.bits) == (PCM.dac_bits, PCM.adc_bits)
    ideal = build_hybrid_deq(5, 3, IDEAL, width=6)
    assert (ideal.dac.bits, ideal.adc.bits) == (None, None)


def _fd_check(model: HybridDEQ, param: torch.Tensor, x, target, seed: int) -> float:
    """Relative error of the autograd directional derivative vs central differences."""

    def loss() -> torch.Tensor:
        return (model(x) - target).square().sum()

    model.zero_grad()
    loss().backward()
    stats = model.deq.last_backward_stats  # the adjoint solve of this backward
    assert stats is not None and stats.converged
    grad = param.grad.clone()
    direction = torch.randn(param.shape, generator=_gen(seed), dtype=F64)
    eps = 1e-6
    with torch.no_grad():
        param.add_(eps * direction)
        plus = float(loss())
        param.sub_(2 * eps * direction)
        minus = float(loss())
        param.add_(eps * direction)
    fd = (plus - minus) / (2 * eps)
    analytic = float((grad * direction).sum())
    return abs(analytic - fd) / abs(fd)


@pytest.mark.parametrize("kind", ["plain", "cc", "pi"])
def test_implicit_gradients_match_finite_differences(kind):
    model = _build(
        kind,
        digital_bits=None,
        forward_options=TIGHT,
        backward="implicit",
        backward_options=TIGHT,
        seed=1,
    ).double()
    g = _gen(3)
    x = torch.randn(4, 5, generator=g, dtype=F64)
    target = torch.randn(4, 3, generator=g, dtype=F64)
    encoder_weight = model.encoder[1].weight
    assert _fd_check(model, encoder_weight, x, target, seed=4) < 1e-4
    assert _fd_check(model, model.core.feedback.weight, x, target, seed=5) < 1e-4


def test_projection_restores_contractivity_after_a_large_optimizer_step():
    model = _build("plain", digital_bits=None)
    optimizer = torch.optim.SGD(model.parameters(), lr=50.0)
    x = torch.randn(8, 5, generator=_gen(6))
    target = torch.randn(8, 3, generator=_gen(7))
    (model(x) - target).square().sum().backward()
    optimizer.step()
    assert model.core.contraction_bound() > 0.9  # the step left the contractive set
    before = model.project_()
    assert before > 0.9
    assert model.core.contraction_bound() <= 0.9 + 1e-6


def test_set_profile_switches_the_core_and_the_converter_resolutions():
    model = build_hybrid_deq(5, 3, IDEAL, width=6)
    profile = PCM.replace(dac_bits=6, adc_bits=5)
    model.set_profile(profile)
    assert model.core.feedback.profile is profile
    assert (model.dac.bits, model.adc.bits) == (6, 5)
    model.set_profile(IDEAL)
    assert model.core.feedback.profile is IDEAL
    assert (model.dac.bits, model.adc.bits) == (None, None)


def test_set_profile_makes_the_injection_quantised():
    model = build_hybrid_deq(5, 3, IDEAL, width=6).eval()
    model.set_profile(IDEAL.replace(dac_bits=2))
    with torch.no_grad():
        u = model.injection(torch.randn(64, 5, generator=_gen(8)))
    assert u.unique().numel() <= 4


@pytest.mark.parametrize("build_profile", [IDEAL, PCM])
def test_forward_on_a_deployed_chip_is_finite(build_profile):
    model = _build("plain", profile=build_profile).eval()
    x = torch.randn(5, 5, generator=_gen(9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # noise floor / max_iter notices
        with Chip(PCM, seed=0).deploy(model):
            assert model.core.feedback.chip_read is not None
            y = model(x)
    assert model.core.feedback.chip_read is None
    assert y.shape == (5, 3) and torch.isfinite(y).all()


def test_training_keeps_the_core_contractive():
    model = _build("plain", profile=PCM)
    g = _gen(10)
    x = torch.randn(32, 5, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        history = train_hybrid(model, x, y, "classification", epochs=2, lr=0.5, batch_size=8)
    assert len(history) == 2
    assert all(math.isfinite(record["loss"]) for record in history)
    assert model.core.contraction_bound() <= 0.9 + 1e-6


# ---------------------------------------------------------------------------------------
# nn/quantized.py (the digital parameterisation and read-out)
# ---------------------------------------------------------------------------------------


def test_full_precision_quantized_linear_is_nn_linear():
    q = QuantizedLinear(6, 4, weight_bits=None)
    x = torch.randn(3, 6, generator=_gen(11))
    expected = x @ q.weight.detach().T + q.bias.detach()
    torch.testing.assert_close(q(x).detach(), expected)


@pytest.mark.parametrize("bits", [2, 3, 6])
def test_quantized_linear_weights_lie_on_a_per_row_grid(bits):
    torch.manual_seed(1)
    q = QuantizedLinear(50, 4, weight_bits=bits).double()
    w = q.weight.detach()
    wq = q.quantized_weight().detach()
    s = w.abs().amax(dim=1, keepdim=True)
    step = 1.0 / (2 ** (bits - 1) - 1)
    codes = wq / (s * step)
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-9)
    assert float(codes.abs().max()) <= 2 ** (bits - 1) - 1 + 1e-9
    assert float(((wq - w).abs() / s).max()) <= step / 2 + 1e-12
    # the row maximum is representable exactly
    torch.testing.assert_close(wq.abs().amax(dim=1, keepdim=True), s)


def _quantized_layer(weight: list[list[float]], bits: int = 4) -> QuantizedLinear:
    q = QuantizedLinear(len(weight[0]), len(weight), bias=False, weight_bits=bits).double()
    with torch.no_grad():
        q.weight.copy_(torch.tensor(weight, dtype=F64))
    return q


def test_quantized_linear_gradient_is_straight_through_below_the_row_maximum():
    # every row's largest |W| is negative here
    q = _quantized_layer([[-0.5, 0.2, 0.1], [0.3, -0.4, 0.05]])
    x = torch.randn(7, 3, generator=_gen(12), dtype=F64)
    q(x).sum().backward()
    # d/dW of Σ x Wqᵀ with dWq/dW = I (straight through): every row gets Σ_b x_b
    torch.testing.assert_close(q.weight.grad, x.sum(0).expand(2, 3))


def test_quantized_linear_gradient_reaches_a_positive_row_maximum():
    q = _quantized_layer([[0.5, 0.2, -0.1], [0.3, -0.1, 0.05]])
    x = torch.randn(7, 3, generator=_gen(13), dtype=F64)
    q(x).sum().backward()
    torch.testing.assert_close(q.weight.grad, x.sum(0).expand(2, 3))


@pytest.mark.parametrize("bits", [1, 17])
def test_quantized_linear_rejects_out_of_range_bits(bits):
    with pytest.raises(ValueError, match="weight_bits"):
        QuantizedLinear(3, 3, weight_bits=bits)
