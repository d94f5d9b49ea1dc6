"""The transistor neuron (EKV), the stretched-exponential fit to it, and the MLP built on it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analogtorch.hardware.neuron import MOSNeuron
from analogtorch.models import MNIST_NEURON, build_mlp, build_model
from analogtorch.nn.activation_fit import fit_neuron, fit_stretched_exponential
from analogtorch.nn.activations import StretchedExponential

NEURON = MOSNeuron(input_range=2.0)  # n = 1.3, T = 300 K, V_ov = 0.1 V


def test_thermal_voltage_at_300_kelvin_is_25_85_millivolts():
    assert NEURON.thermal_voltage == pytest.approx(0.025852, rel=1e-4)


def test_ekv_drain_current_matches_hand_value():
    # V_G - V_T = 0.1 V: u = 0.1 / (2 * 1.3 * 0.0258520) = 1.487759;
    # e^u = 4.427525, ln(1 + e^u) = ln(5.427525) = 1.691416, squared = 2.860889
    current = NEURON.drain_current(torch.tensor(0.1, dtype=torch.float64))
    assert current.item() == pytest.approx(2.860889, rel=1e-5)


def test_ekv_drain_current_has_the_weak_and_strong_inversion_limits():
    n_ut = 1.3 * NEURON.thermal_voltage
    # I_D -> I_S exp(V / (n U_T)), relative error ~ exp(V / (2 n U_T)) = 1.4e-4 at -0.6 V
    weak = torch.tensor(-0.6, dtype=torch.float64)
    assert NEURON.drain_current(weak).item() == pytest.approx(math.exp(-0.6 / n_ut), rel=3e-4)
    strong = torch.tensor(1.0, dtype=torch.float64)  # I_D -> I_S (V / (2 n U_T))^2
    assert NEURON.drain_current(strong).item() == pytest.approx((1.0 / (2 * n_ut)) ** 2, rel=1e-3)


def test_neuron_response_maps_full_scale_to_full_scale_and_is_a_rectifier():
    h = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)
    y = NEURON.response(h)
    assert y[2].item() == pytest.approx(2.0, rel=1e-12)
    # y(0) = r ln^2(2) / I_D(V_ov) = 2 * 0.480453 / 2.860889 = 0.335877
    assert y[1].item() == pytest.approx(0.335877, rel=1e-5)
    assert 0.0 < y[0].item() < 0.05


@pytest.mark.parametrize(
    ("a", "k", "c", "d"),
    [(0.3, -1.7, -2.2, 0.1), (2.0, 1.3, 0.8, -0.5)],  # a rising rectifier, a saturating curve
)
def test_fit_recovers_known_parameters_from_noisy_samples_of_f(a, k, c, d):
    gen = torch.Generator().manual_seed(0)
    x = torch.linspace(-3.0, 3.0, 401, dtype=torch.float64)
    clean = c * -torch.log1p(a * torch.exp(-k * x)) + d  # the naive formula, not the module
    noisy = clean + 1e-3 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    fit = fit_stretched_exponential(x, noisy)
    assert (fit.a, fit.input_scale, fit.output_scale, fit.output_offset) == pytest.approx(
        (a, k, c, d), rel=0.02, abs=0.01
    )
    assert fit.rms_residual == pytest.approx(1e-3, rel=0.15)  # the noise, nothing more


def test_fitted_activation_reproduces_the_neuron_within_the_fit_residual():
    fit = fit_neuron(NEURON)
    assert fit.rms_residual < 2.5e-3  # 0.12 % of the full-scale output r = 2
    h = NEURON.input_samples()
    module = fit.activation().double()
    with torch.no_grad():
        module.log_a.fill_(math.log(fit.a))
        gap = (module(h) - NEURON.response(h)).abs().max().item()
    assert gap == pytest.approx(fit.max_residual, rel=1e-6)
    assert fit.input_scale < 0 and fit.output_scale < 0  # a rising rectifier
    assert list(module.parameters()) == []  # the circuit is fixed


def test_stretched_exponential_scales_match_hand_value():
    act = StretchedExponential(0.5, input_scale=-2.0, output_scale=3.0, output_offset=0.25)
    # x = 0.4: 3 * -log(1 + 0.5 e^{0.8}) + 0.25 = 3 * -log(2.112770) + 0.25 = -1.994
    expected = 3.0 * -math.log(1.0 + 0.5 * math.exp(0.8)) + 0.25
    assert act(torch.tensor([0.4])).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="input_scale"):
        StretchedExponential(input_scale=0.0)


@pytest.mark.parametrize("field", ["slope_factor", "temperature_kelvin", "overdrive_volts"])
def test_neuron_rejects_out_of_range_parameters(field):
    with pytest.raises(ValueError, match=field):
        MOSNeuron(**{field: 0.0})


def test_build_mlp_default_is_the_hand_built_relu_mlp():
    with torch.random.fork_rng():
        torch.manual_seed(7)
        hand = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )
    built = build_mlp(784, (256, 256), 10, seed=7)
    assert [type(m) for m in built] == [type(m) for m in hand]
    assert all(
        torch.equal(p, q) for p, q in zip(built.parameters(), hand.parameters(), strict=True)
    )
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.equal(built(x), hand(x))


def test_stretched_mlp_has_the_relu_mlp_weights_and_the_fitted_neuron():
    relu, _ = build_model("mnist-mlp", seed=3)
    stretched, shape = build_model("mnist-mlp-stretched", seed=3)
    assert shape == (1, 28, 28)
    assert all(
        torch.equal(p, q) for p, q in zip(relu.parameters(), stretched.parameters(), strict=True)
    )
    acts = [m for m in stretched if isinstance(m, StretchedExponential)]
    assert len(acts) == 2 and acts[0] is not acts[1]
    assert acts[0].a.item() == pytest.approx(fit_neuron(MNIST_NEURON).a, rel=1e-6)
    h = MNIST_NEURON.input_samples()
    assert (acts[0](h.float()) - MNIST_NEURON.response(h)).abs().max() < 0.01 * 16
