"""Uniform quantisers: levels, rounding error, unbiased stochastic rounding, STE/LSQ gradients.

Convention (``analogtorch.hardware.quantize``): a ``b``-bit signed quantiser has codes
``k in [-2**(b-1), 2**(b-1) - 1]``, an unsigned one ``k in [0, 2**b - 1]``, and
``q(x) = step * clamp(round(x / step), k_min, k_max)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from analogtorch.hardware.quantize import quantize, weight_step


def _codes(bits: int, signed: bool) -> tuple[int, int]:
    """Code range written out from the docstring convention (independent of the code)."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", range(1, 9))
def test_dense_ramp_gives_exactly_two_to_the_bits_levels_on_the_step_grid(bits, signed):
    step = 0.37
    k_min, k_max = _codes(bits, signed)
    # The ramp runs well past both ends of the range so that every code is reached.
    x = torch.linspace((k_min - 3) * step, (k_max + 3) * step, 40 * 2**bits, dtype=torch.float64)
    q = quantize(x, bits, step, signed=signed)
    levels = torch.unique(q)
    assert levels.numel() == 2**bits
    codes = levels / step
    assert torch.allclose(codes, codes.round(), atol=1e-9)
    assert codes.round().min().item() == k_min
    assert codes.round().max().item() == k_max
    expected = torch.arange(k_min, k_max + 1, dtype=torch.float64) * step
    assert torch.allclose(levels, expected, atol=1e-12)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_deterministic_rounding_error_is_at_most_half_a_step_inside_the_range(bits, signed):
    step = 0.05
    k_min, k_max = _codes(bits, signed)
    x = torch.linspace(k_min * step, k_max * step, 10_001, dtype=torch.float64)
    q = quantize(x, bits, step, signed=signed)
    assert (q - x).abs().max().item() <= step / 2 + 1e-12
    # Rounding to the nearest level: the error is also never larger than to any other level.
    grid = torch.arange(k_min, k_max + 1, dtype=torch.float64) * step
    nearest = (x[:, None] - grid[None, :]).abs().min(dim=1).values
    assert torch.allclose((q - x).abs(), nearest, atol=1e-12)


def test_values_outside_the_range_clamp_to_the_end_codes():
    step = 0.25
    x = torch.tensor([-100.0, -2.3, 1.9, 100.0])
    q = quantize(x, 4, step)  # codes -8..7 -> levels -2.0 .. 1.75
    assert q.tolist() == [-2.0, -2.0, 1.75, 1.75]
    q_unsigned = quantize(x, 3, step, signed=False)  # codes 0..7 -> levels 0 .. 1.75
    assert q_unsigned.tolist() == [0.0, 0.0, 1.75, 1.75]


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.73])
def test_stochastic_rounding_is_unbiased(fraction):
    step, bits, n = 0.1, 6, 200_000
    x0 = (3 + fraction) * step
    x = torch.full((n,), x0, dtype=torch.float64)
    g = torch.Generator().manual_seed(1234)
    q = quantize(x, bits, step, stochastic=True, generator=g)
    # Each draw is one of the two neighbouring levels: a Bernoulli(p = fraction) step.
    lower, upper = 3 * step, 4 * step
    on_grid = torch.isclose(q, torch.tensor(lower, dtype=q.dtype)) | torch.isclose(
        q, torch.tensor(upper, dtype=q.dtype)
    )
    assert bool(on_grid.all())
    standard_error = step * math.sqrt(fraction * (1 - fraction) / n)
    assert abs(q.mean().item() - x0) < 5 * standard_error
    p_up = torch.isclose(q, torch.tensor(upper, dtype=q.dtype)).double().mean().item()
    assert abs(p_up - fraction) < 5 * math.sqrt(fraction * (1 - fraction) / n)


def test_stochastic_rounding_is_unbiased_across_a_ramp():
    step, bits, n_per_value = 0.2, 4, 20_000
    values = torch.linspace(-1.5, 1.3, 15, dtype=torch.float64)  # inside [-8, 7] * 0.2
    x = values.repeat_interleave(n_per_value)
    g = torch.Generator().manual_seed(7)
    q = quantize(x, bits, step, stochastic=True, generator=g).reshape(15, n_per_value)
    frac = values / step - torch.floor(values / step)
    standard_error = step * torch.sqrt(frac * (1 - frac) / n_per_value).clamp_min(1e-12)
    assert bool(((q.mean(dim=1) - values).abs() <= 5 * standard_error + 1e-12).all())


def test_stochastic_rounding_is_reproducible_from_the_generator():
    x = torch.linspace(-1, 1, 1000)
    a = quantize(x, 5, 0.07, stochastic=True, generator=torch.Generator().manual_seed(3))
    b = quantize(x, 5, 0.07, stochastic=True, generator=torch.Generator().manual_seed(3))
    c = quantize(x, 5, 0.07, stochastic=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stochastic_rounding_clamps_to_the_code_range():
    x = torch.tensor([-50.0, 50.0]).repeat(1000)
    q = quantize(x, 3, 0.5, stochastic=True, generator=torch.Generator().manual_seed(0))
    assert set(q.tolist()) == {-2.0, 1.5}


@pytest.mark.parametrize("stochastic", [False, True])
def test_straight_through_gradient_is_one_inside_and_zero_where_clamped(stochastic):
    step, bits = 0.1, 4  # codes -8..7 -> range [-0.8, 0.7]
    x = torch.tensor(
        [-2.0, -0.93, -0.62, -0.11, 0.0, 0.26, 0.55, 0.76, 3.0],
        dtype=torch.float64,
        requires_grad=True,
    )
    upstream = torch.arange(1.0, 10.0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    q = quantize(x, bits, step, stochastic=stochastic, generator=g)
    (q * upstream).sum().backward()
    inside = (x.detach() >= -0.8) & (x.detach() <= 0.7)
    assert torch.allclose(x.grad, upstream * inside, rtol=1e-12, atol=0)


def test_learned_step_gradient_matches_the_lsq_formula():
    bits = 3  # codes -4..3
    k_min, k_max = _codes(bits, True)
    step = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([-2.0, -1.13, -0.41, 0.05, 0.52, 0.83, 0.97, 1.5], dtype=torch.float64)
    upstream = torch.tensor([0.3, -1.2, 0.7, 2.0, -0.4, 1.1, 0.9, -2.5], dtype=torch.float64)
    q = quantize(x, bits, step)
    (q * upstream).sum().backward()

    v = x / 0.3
    per_element = []
    for vi in v.tolist():
        if vi < k_min:
            per_element.append(float(k_min))
        elif vi > k_max:
            per_element.append(float(k_max))
        else:
            per_element.append(round(vi) - vi)
    expected = sum(u * d for u, d in zip(upstream.tolist(), per_element, strict=True))
    assert step.grad.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_learned_step_gradient_of_stochastic_rounding_uses_the_drawn_codes():
    bits = 4
    k_min, k_max = _codes(bits, True)
    step = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([-3.0, -0.6, 0.13, 0.9, 5.0], dtype=torch.float64)
    q = quantize(x, bits, step, stochastic=True, generator=torch.Generator().manual_seed(5))
    q.sum().backward()
    codes = (q.detach() / 0.25).round()
    v = x / 0.25
    inside = (v >= k_min) & (v <= k_max)
    # d(step * code)/dstep = code - v inside (STE), the clamped code outside.
    expected = torch.where(inside, codes - v, codes).sum().item()
    assert step.grad.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("bits", [0, -1, 17, 32])
@pytest.mark.parametrize("stochastic", [False, True])
def test_bits_outside_one_to_sixteen_raise_value_error(bits, stochastic):
    with pytest.raises(ValueError, match=f"bits={bits}"):
        quantize(
            torch.zeros(3),
            bits,
            0.1,
            stochastic=stochastic,
            generator=torch.Generator().manual_seed(0),
        )


@pytest.mark.parametrize("bits", range(2, 17))
def test_weight_step_maps_one_onto_the_largest_positive_code(bits):
    step = weight_step(bits)
    largest = 2 ** (bits - 1) - 1
    assert step == pytest.approx(1.0 / largest, rel=1e-15)
    q = quantize(torch.tensor([-1.0, 1.0], dtype=torch.float64), bits, step)
    assert q.tolist() == pytest.approx([-1.0, 1.0], abs=1e-12)
    assert (q / step).round().tolist() == [-largest, largest]


@pytest.mark.parametrize("bits", [1, 17])
def test_weight_step_rejects_bits_outside_two_to_sixteen(bits):
    with pytest.raises(ValueError, match=r"\[2, 16\]"):
        weight_step(bits)
