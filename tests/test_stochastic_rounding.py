"""Stochastic weight rounding (``weight_rounding='stochastic'``): unbiased with the analytic
variance, only in a layer's training forward, straight-through gradient, seeded draws.

References are written out here: a grid value is ``s * k / (2^(b-1) - 1)``; stochastic
rounding of ``u = w / Delta`` gives ``ceil(u)`` with probability ``f = u - floor(u)``, so
``E[q] = w`` and ``Var[q] = Delta^2 f (1 - f)``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.hardware.mapping import normalized_weights, weight_scale
from analogtorch.hardware.product_weights import product_weights
from analogtorch.hardware.random import NoiseSource, seed_noise

BITS = 3
CODES = 2 ** (BITS - 1) - 1  # codes per unit of normalised weight: Delta = s / CODES
STOCHASTIC = at.HardwareProfile(weight_bits=BITS, weight_rounding="stochastic")


def _layer(profile: at.HardwareProfile, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return at.convert(nn.Linear(6, 4, bias=False), profile, seed=seed)


def _held(layer: nn.Module) -> torch.Tensor:
    """The weights one forward multiplied by: with an identity input (no DAC, ADC or noise)
    the outputs are ``W_q^T``."""
    return layer(torch.eye(layer.in_features)).T


def _nearest(weight: torch.Tensor) -> torch.Tensor:
    scale = weight.abs().amax(dim=1, keepdim=True)
    return scale * torch.round(weight / scale * CODES) / CODES


def test_stochastic_rounding_has_mean_w_and_variance_delta_squared_f_one_minus_f():
    n_draws, delta = 40_000, 1.0 / CODES
    row = torch.tensor([-0.9, -0.5, -0.05, 0.0, 0.1, 1.0 / 3.0, 0.62, 0.99], dtype=torch.float64)
    weights = row.expand(n_draws, -1)
    profile = STOCHASTIC.replace(weight_range=1.0)  # s = 1 for every row: rows are draws
    dither = NoiseSource(7).uniform(weights.shape, torch.float64)
    q = normalized_weights(weights, weight_scale(weights, profile), profile, dither)
    frac = [w / delta - math.floor(w / delta) for w in row.tolist()]
    expected_var = torch.tensor([delta**2 * f * (1 - f) for f in frac], dtype=torch.float64)
    # Each value lands on one of its two neighbouring grid points, exactly.
    codes = q / delta
    assert bool(((codes - codes.round()).abs() < 1e-9).all())
    assert bool(((codes.round() - row / delta).abs() < 1.0 + 1e-9).all())
    # Mean: within 5 standard errors of w; variance: within 5 % (and 0 on the grid).
    standard_error = (expected_var / n_draws).sqrt()
    assert bool(((q.mean(dim=0) - row).abs() <= 5 * standard_error + 1e-12).all())
    assert torch.allclose(q.var(dim=0), expected_var, rtol=0.05, atol=1e-12)


def test_noise_source_uniform_draws_are_in_the_unit_interval_and_reproducible():
    big = (300, 1000)  # above the parallel-chunk threshold
    a, b = NoiseSource(3).uniform(big), NoiseSource(3).uniform(big)
    assert torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0
    assert abs(float(a.mean()) - 0.5) < 0.005
    assert not torch.equal(a, NoiseSource(4).uniform(big))


def test_training_forwards_round_stochastically_around_w():
    layer = _layer(STOCHASTIC).train()
    weight = layer.weight.detach()
    scale = weight.abs().amax(dim=1, keepdim=True)
    with torch.no_grad():
        draws = torch.stack([_held(layer) for _ in range(3000)])
    u = weight / scale * CODES
    f = u - u.floor()
    expected_var = (scale / CODES) ** 2 * f * (1 - f)
    # every draw is on the grid, at one of the two codes next to w
    codes = draws / scale * CODES
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert bool(((codes - u).abs() < 1 + 1e-4).all())
    # per weight, the share rounded up is f (mean within 5 standard errors of w); summed
    # over the weights, the variance is the analytic one within 5 %
    standard_error = (expected_var / draws.shape[0]).sqrt()
    assert bool(((draws.mean(dim=0) - weight).abs() <= 5 * standard_error + 1e-6).all())
    assert float(draws.var(dim=0).sum()) == pytest.approx(float(expected_var.sum()), rel=0.05)


def test_eval_chips_and_exported_weights_round_to_nearest():
    layer = _layer(STOCHASTIC).eval()
    nearest = _nearest(layer.weight.detach())
    with torch.no_grad():
        assert torch.allclose(_held(layer), nearest, atol=1e-6)
        at.set_eval_noise(layer, True)  # a noisy evaluation stands for one programmed chip
        assert torch.allclose(_held(layer), nearest, atol=1e-6)
        layer.train()
        with at.Chip(STOCHASTIC, seed=0).deploy(layer):
            assert torch.allclose(_held(layer), nearest, atol=1e-6)
    assert torch.allclose(at.unconvert(layer).weight, nearest, atol=1e-6)


def test_the_fused_and_the_mapped_training_paths_draw_the_same_rounding():
    layer = _layer(STOCHASTIC).train()
    x = torch.randn(5, 6)
    seed_noise(layer, 11)
    fused = layer(x)  # autograd on: the fused product-weights node
    seed_noise(layer, 11)
    with torch.no_grad():
        mapped = layer(x)  # no autograd: the mapped-weights path (no cache with a draw)
    assert torch.equal(fused.detach(), mapped)
    with torch.no_grad():
        assert not torch.equal(mapped, layer(x))  # the next forward draws afresh


def test_the_rounding_gradient_is_straight_through():
    layer = _layer(STOCHASTIC).train()
    upstream = torch.randn(6, 4)
    (_held(layer).T * upstream).sum().backward()
    # y = x W_q^T with x = I: dL/dW = upstream^T exactly as for the unrounded weights,
    # the row maxima (on the end codes) included.
    assert torch.allclose(layer.weight.grad, upstream.T, atol=1e-6)


def test_product_weights_and_normalized_weights_agree_and_pass_gradients_straight():
    torch.manual_seed(0)
    weight = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    scale = weight_scale(weight, STOCHASTIC)
    dither = NoiseSource(2).uniform(weight.shape, torch.float64)
    fused = product_weights(weight, scale, 1.0, None, STOCHASTIC, dither)
    mapped = normalized_weights(weight, scale, STOCHASTIC, dither)
    assert torch.equal(fused, mapped)
    upstream = torch.randn(5, 9, dtype=torch.float64)
    (grad_fused,) = torch.autograd.grad((fused * upstream).sum(), weight)
    (grad_mapped,) = torch.autograd.grad((mapped * upstream).sum(), weight)
    assert torch.allclose(grad_fused, upstream / scale)
    assert torch.allclose(grad_mapped, upstream / scale)


def _train_step(profile: at.HardwareProfile, noise_seed: int) -> torch.Tensor:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    model = at.convert(digital, profile, seed=1).train()
    seed_noise(model, noise_seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_a_training_step_with_stochastic_rounding_is_deterministic_under_the_seed():
    profile = STOCHASTIC.replace(weight_bits=4, prog_noise_std=0.05, dac_bits=6, adc_bits=8)
    first, again = _train_step(profile, 5), _train_step(profile, 5)
    assert torch.equal(first, again)
    assert not torch.equal(first, _train_step(profile, 6))
    assert not torch.equal(first, _train_step(profile.replace(weight_rounding="nearest"), 5))


@pytest.mark.parametrize("value", ["round", "Stochastic", 1, None])
def test_an_unknown_rounding_is_refused_naming_the_field(value):
    with pytest.raises(at.ProfileError, match=r"weight_rounding=.*'nearest' or 'stochastic'"):
        at.HardwareProfile(weight_bits=4, weight_rounding=value)


def _output(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv1d(3, 4, 3), (2, 3, 9)),
        (nn.Conv2d(3, 4, 3), (2, 3, 6, 6)),
        (nn.ConvTranspose2d(3, 4, 3), (2, 3, 5, 5)),
        (nn.GRU(5, 4, batch_first=True), (2, 3, 5)),
    ],
    ids=["conv1d", "conv2d", "conv-transpose2d", "gru"],
)
def test_every_layer_type_trains_with_stochastic_rounding_on_the_affine_grid(layer, shape):
    profile = STOCHASTIC.replace(weight_quant="affine", adc_bits=8)
    model = at.convert(layer, profile).train()
    x = torch.randn(shape)
    _output(model(x)).square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    with torch.no_grad():  # each training forward draws its own rounding
        assert not torch.equal(_output(model(x)), _output(model(x)))
        model.eval()  # nearest rounding: repeatable
        assert torch.equal(_output(model(x)), _output(model(x)))
