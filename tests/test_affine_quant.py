"""Affine (zero-point) weight grid (``weight_quant='affine'``): a row's range
``[min(W, 0), max(W, 0)]`` cut into ``L = 2^b - 1`` steps ``Delta = span / L`` with the integer
zero point ``z = round(-w_min / Delta)``; held weights ``Delta * (clamp(round(W / Delta) + z,
0, L) - z)``. References below are written out from that definition, by hand or in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.hardware.mapping import (
    held_weights,
    normalized_weights,
    weight_grid,
    weight_scale,
)
from analogtorch.hardware.product_weights import product_weights
from analogtorch.hardware.random import seed_noise

AFFINE4 = at.HardwareProfile(weight_bits=4, weight_quant="affine")


def _reference(weight: np.ndarray, bits: int) -> np.ndarray:
    """Affine quantisation per row, in float64 numpy (independent of the torch code)."""
    levels = 2**bits - 1
    w_min = np.minimum(weight.min(axis=1, keepdims=True), 0.0)
    w_max = np.maximum(weight.max(axis=1, keepdims=True), 0.0)
    delta = (w_max - w_min) / levels
    zero_point = np.round(-w_min / delta)
    codes = np.clip(np.round(weight / delta) + zero_point, 0, levels)
    return delta * (codes - zero_point)


def test_range_zero_point_and_codes_match_a_hand_computation():
    # w_min = -0.1, w_max = 0.3: span 0.4, Delta = 0.4 / 15, z = round(3.75) = 4,
    # codes of W / Delta + z = (11.25, -3.75, 1.875, 0, 7.5) + 4 -> 15, 0, 6, 4, 12 (7.5
    # rounds half to even: 8).
    weight = torch.tensor([[0.3, -0.1, 0.05, 0.0, 0.2]], dtype=torch.float64)
    scale = weight_scale(weight, AFFINE4)
    assert scale.item() == pytest.approx(0.4, abs=1e-15)
    c, k_min, k_max = weight_grid(weight / scale, AFFINE4)
    assert (c, k_min.item(), k_max.item()) == (15.0, -4.0, 11.0)  # type: ignore[union-attr]
    held = held_weights(weight, AFFINE4)
    expected = torch.tensor([[15, 0, 6, 4, 12]], dtype=torch.float64) - 4
    assert torch.allclose(held, expected * 0.4 / 15, atol=1e-15)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_held_weights_match_the_reference_within_half_a_step(bits):
    rng = np.random.default_rng(bits)
    weight = rng.normal(size=(6, 50)) + rng.normal(size=(6, 1))  # rows of mixed offset
    weight[1] = np.abs(weight[1])  # one all-positive row
    weight[2] = -np.abs(weight[2])  # one all-negative row
    profile = AFFINE4.replace(weight_bits=bits)
    held = held_weights(torch.from_numpy(weight), profile).numpy()
    expected = _reference(weight, bits)
    np.testing.assert_allclose(held, expected, atol=1e-12)
    span = np.maximum(weight.max(1), 0) - np.minimum(weight.min(1), 0)
    assert (np.abs(held - weight) <= span[:, None] / (2**bits - 1) / 2 + 1e-12).all()
    # every held value is an integer number of steps: the grid is reconstructed exactly
    steps = held / (span[:, None] / (2**bits - 1))
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)


def test_zero_is_exactly_representable():
    torch.manual_seed(0)
    weight = torch.randn(8, 40) + torch.linspace(-2, 2, 8)[:, None]
    weight[:, ::5] = 0.0
    held = held_weights(weight, AFFINE4)
    assert bool((held[:, ::5] == 0.0).all())  # exactly zero, not approximately


def test_a_dense_row_uses_all_two_to_the_b_levels():
    weight = torch.linspace(-1.0, 3.0, 4001, dtype=torch.float64)[None]
    affine = torch.unique(held_weights(weight, AFFINE4))
    symmetric = torch.unique(held_weights(weight, AFFINE4.replace(weight_quant="symmetric")))
    assert affine.numel() == 2**4
    assert symmetric.numel() == 10  # codes -2 .. 7 of 7 per 3: a third of the range unused
    assert torch.allclose(affine.diff(), torch.full((15,), 4.0 / 15, dtype=torch.float64))


def test_a_fixed_range_maps_plus_minus_r_onto_the_signed_b_bit_codes():
    profile = AFFINE4.replace(weight_range=2.0)  # span 4, Delta = 4/15, z = round(7.5) = 8
    weight = torch.tensor([[-5.0, -2.0, -0.1, 0.0, 0.9, 1.99, 7.0]], dtype=torch.float64)
    held = held_weights(weight, profile)
    codes = torch.tensor([[-8, -8, 0, 0, 3, 7, 7]], dtype=torch.float64)  # -2/Delta = -7.5 -> -8
    assert torch.allclose(held, codes * 4.0 / 15, atol=1e-15)


def test_the_fused_training_node_and_the_mapping_agree_and_are_straight_through():
    torch.manual_seed(1)
    weight = (torch.randn(5, 9, dtype=torch.float64) + 0.7).requires_grad_()
    scale = weight_scale(weight, AFFINE4)
    fused = product_weights(weight, scale, 1.0, None, AFFINE4)
    mapped = normalized_weights(weight, scale, AFFINE4)
    assert torch.equal(fused, mapped)
    upstream = torch.randn(5, 9, dtype=torch.float64)
    for out in (fused, mapped):
        (grad,) = torch.autograd.grad((out * scale * upstream).sum(), weight)
        assert torch.allclose(grad, upstream)  # row ends (half a code out) included


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


def test_an_affine_layer_on_a_noise_free_chip_holds_the_reference_grid():
    layer = at.convert(nn.Linear(7, 5, bias=False), AFFINE4)
    expected = _reference(layer.weight.detach().double().numpy(), 4)
    with torch.no_grad(), at.Chip(AFFINE4, seed=0).deploy(layer):
        on_chip = layer(torch.eye(7)).T
    np.testing.assert_allclose(on_chip.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(at.unconvert(layer).weight.detach().numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_training_steps_on_the_affine_grid_are_deterministic_under_the_seed(rounding):
    profile = AFFINE4.replace(
        weight_bits=8, weight_rounding=rounding, prog_noise_std=0.03, adc_bits=8
    )

    def trained(noise_seed: int) -> torch.Tensor:
        model = at.convert(_model(), profile, seed=2).train()
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

    torch.manual_seed(3)
    first = trained(4)
    torch.manual_seed(3)
    assert torch.equal(first, trained(4))


@pytest.mark.parametrize("value", ["asymmetric", "zero-point", 8])
def test_an_unknown_weight_grid_is_refused_naming_the_field(value):
    with pytest.raises(at.ProfileError, match=r"weight_quant=.*'symmetric' or 'affine'"):
        at.HardwareProfile(weight_bits=8, weight_quant=value)
