"""The learned weight posterior against the hardware prior (`train.weight_posterior`)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.base import analog_layers
from analogtorch.nn.convert import convert
from analogtorch.train.activations import recorded_outputs
from analogtorch.train.weight_posterior import VariationalWeights

PROFILE = HardwareProfile.preset("seed-4bit-10pct").replace(weight_clip_sigma=None)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return convert(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)), PROFILE, seed=seed)


def test_kl_is_zero_at_init_and_matches_the_closed_form_at_twice_the_prior_std():
    wrapper = VariationalWeights(_model(), PROFILE)
    assert wrapper.kl().item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        for rho, layer in zip(wrapper.rho, analog_layers(wrapper.model).values(), strict=True):
            target = 2.0 * wrapper.prior_std(layer.weight)  # σ_q = 2 σ_hw, every weight
            rho.copy_(target + torch.log(-torch.expm1(-target)))
    # KL(N(μ, 4σ²) ‖ N(μ, σ²)) = ln(1/2) + 4/2 − 1/2
    assert wrapper.kl().item() == pytest.approx(1.5 - math.log(2.0), rel=1e-4)


def test_prior_std_is_the_programming_noise_of_the_row_scale():
    # seed-4bit-10pct: constant programming noise 10 % of the row's max |W|, no read noise
    wrapper = VariationalWeights(_model(), PROFILE)
    weight = analog_layers(wrapper.model)["0"].weight
    expected = 0.1 * weight.detach().abs().amax(dim=1, keepdim=True).expand_as(weight)
    torch.testing.assert_close(wrapper.prior_std(weight), expected, rtol=1e-5, atol=1e-7)


def test_posterior_std_gets_gradients_from_the_task_loss_and_from_the_kl():
    wrapper = VariationalWeights(_model(), PROFILE, seed=3).train()
    x, y = torch.randn(32, 5, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
    F.cross_entropy(wrapper(x), y).backward()
    assert all(float(rho.grad.abs().sum()) > 0 for rho in wrapper.rho)
    wrapper.zero_grad()
    with torch.no_grad():
        wrapper.rho[0].sub_(1.0)  # σ_q below σ_hw: the KL pushes it up (ρ gradient < 0)
    wrapper.kl().backward()
    assert float(wrapper.rho[0].grad.max()) < 0


def test_sampled_output_spread_matches_local_reparameterisation():
    # surrogate noise off in the layers: what training adds is the posterior sample alone,
    # Var[y_j] = Σ_i x_i² σ_q,ji² (independent weights)
    model = _model()
    for layer in analog_layers(model).values():
        layer.set_profile(PROFILE.scale_noise(0.0))
    wrapper = VariationalWeights(model, PROFILE, seed=1)
    first = analog_layers(model)["0"]
    x = torch.randn(1, 5, generator=torch.Generator().manual_seed(2))
    wrapper.eval()
    with torch.no_grad():
        clean = first(x)
    wrapper.train()
    with torch.no_grad(), recorded_outputs(wrapper) as outputs:
        for _ in range(2000):
            wrapper(x)
    draws = torch.stack(outputs["model.0"]) - clean
    expected = F.linear(x.square(), wrapper.posterior_stds()[0].detach().square())
    torch.testing.assert_close(draws.mean(0), torch.zeros_like(clean), atol=0.05, rtol=0)
    torch.testing.assert_close(draws.var(0), expected, rtol=0.12, atol=0)


def test_no_posterior_noise_in_eval_mode_or_on_a_chip():
    from analogtorch.hardware.chip import Chip

    wrapper = VariationalWeights(_model(), PROFILE).eval()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wrapper(x), wrapper.model(x))
    with Chip(PROFILE, seed=0).deploy(wrapper):
        wrapper.train()
        on_chip = wrapper(x)
        torch.testing.assert_close(on_chip, wrapper.model(x))


def test_a_noise_free_profile_or_a_digital_model_is_refused():
    with pytest.raises(ValueError, match="no programming or read noise"):
        VariationalWeights(
            convert(nn.Linear(3, 2), HardwareProfile.preset("ideal")), PROFILE.scale_noise(0.0)
        )
    with pytest.raises(ValueError, match="analog Linear/Conv2d"):
        VariationalWeights(nn.Linear(3, 2), PROFILE)
