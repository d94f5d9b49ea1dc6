"""Activations: `StretchedExponential` and the device-curve `DeviceActivation`."""

from __future__ import annotations

import math

import pytest
import torch

from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.activations import DeviceActivation, StretchedExponential

IDEAL = HardwareProfile.preset("ideal")


def stretched64(a: float, learnable: bool = True) -> StretchedExponential:
    """A float64 module whose ``log_a`` is exactly ``log(a)`` in float64 (not a cast float32)."""
    act = StretchedExponential(a=a, learnable=learnable).double()
    with torch.no_grad():
        act.log_a.fill_(math.log(a))
    return act


def test_stretched_exponential_matches_hand_computed_value_at_zero() -> None:
    act = StretchedExponential(a=2.0)
    y = act(torch.tensor([0.0]))
    assert y.item() == pytest.approx(-math.log(3.0), rel=1e-6)


def test_stretched_exponential_matches_naive_formula_where_finite() -> None:
    x = torch.linspace(-20.0, 20.0, 201, dtype=torch.float64)
    for a in (0.1, 1.0, 3.5):
        act = stretched64(a, learnable=False)
        naive = -torch.log1p(a * torch.exp(-x))
        torch.testing.assert_close(act(x), naive, rtol=1e-12, atol=1e-12)


def test_stretched_exponential_is_finite_for_extreme_inputs_and_gradients() -> None:
    x = torch.tensor([-1e4, -1e3, 0.0, 1e3, 1e4], requires_grad=True)
    act = StretchedExponential(a=2.0)
    y = act(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(act.log_a.grad).all()


def test_stretched_exponential_asymptotes() -> None:
    a = 2.0
    act = stretched64(a, learnable=False)
    big = torch.tensor([50.0, 1e4], dtype=torch.float64)
    assert torch.all(act(big) <= 0.0)
    torch.testing.assert_close(act(big), torch.zeros_like(big), rtol=0, atol=1e-20)
    neg = torch.tensor([-50.0, -1e4], dtype=torch.float64)
    torch.testing.assert_close(act(neg), neg - math.log(a), rtol=1e-12, atol=1e-12)
    # f(log a) = -log 2
    assert act(torch.tensor([math.log(a)], dtype=torch.float64)).item() == pytest.approx(
        -math.log(2.0)
    )


def test_stretched_exponential_derivative_matches_finite_differences() -> None:
    a = 1.7
    act = stretched64(a, learnable=False)
    x = torch.linspace(-8.0, 8.0, 41, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(act(x).sum(), x)
    h = 1e-6
    with torch.no_grad():
        fd = (act(x + h) - act(x - h)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-7, atol=1e-9)
    # closed form: sigmoid(log a - x)
    torch.testing.assert_close(grad, torch.sigmoid(math.log(a) - x.detach()))
    assert torch.autograd.gradcheck(act, (x,))


def test_stretched_exponential_gradient_reaches_a() -> None:
    act = stretched64(1.5)
    x = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    act(x).sum().backward()
    a = 1.5
    # df/dlog_a = a df/da = -sigmoid(log a - x)
    expected = -torch.sigmoid(math.log(a) - x).sum()
    assert act.log_a.grad is not None
    assert act.log_a.grad.item() == pytest.approx(expected.item(), rel=1e-10)
    # a stays positive after a large step
    with torch.no_grad():
        act.log_a -= 100.0 * act.log_a.grad
    assert act.a.item() > 0.0


def test_stretched_exponential_fixed_a_is_not_a_parameter() -> None:
    act = StretchedExponential(a=2.0, learnable=False)
    assert list(act.parameters()) == []
    assert act.a.item() == pytest.approx(2.0)
    assert "learnable=False" in repr(act)
    learnable = StretchedExponential(a=2.0)
    assert [name for name, _ in learnable.named_parameters()] == ["log_a"]
    assert "a=2" in repr(learnable)


@pytest.mark.parametrize("a", [0.0, -1.0, float("nan"), float("inf")])
def test_stretched_exponential_rejects_non_positive_a(a: float) -> None:
    with pytest.raises(ValueError, match="a="):
        StretchedExponential(a=a)


def test_device_activation_tanh_profile_matches_hand_formula() -> None:
    profile = IDEAL.replace(transfer_curve="tanh", transfer_nonlinearity=2.0)
    r = 0.5
    act = DeviceActivation(profile, input_range=r)
    x = torch.linspace(-r, r, 21, dtype=torch.float64)
    expected = r * torch.tanh(2.0 * x / r) / math.tanh(2.0)
    torch.testing.assert_close(act(x), expected)
    # saturates at +-r outside the range
    out = act(torch.tensor([-3.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([-r, r], dtype=torch.float64))
    assert "tanh" in repr(act)


def test_device_activation_sinh_profile_matches_hand_formula() -> None:
    a = 1.5
    profile = IDEAL.replace(transfer_curve="sinh", transfer_nonlinearity=a)
    r = 2.0
    act = DeviceActivation(profile, input_range=r)
    x = torch.linspace(-r, r, 21, dtype=torch.float64)
    expected = r * torch.sinh(a * x / r) / math.sinh(a)
    torch.testing.assert_close(act(x), expected)


def test_device_activation_linear_profile_is_identity_within_range_and_clips_outside() -> None:
    assert IDEAL.transfer_curve == "linear"
    r = 1.5
    act = DeviceActivation(IDEAL, input_range=r)
    inside = torch.linspace(-r, r, 31)
    torch.testing.assert_close(act(inside), inside)
    outside = torch.tensor([-10.0, -1.6, 1.6, 10.0])
    torch.testing.assert_close(act(outside), torch.tensor([-r, -r, r, r]))
    assert list(act.parameters()) == []


@pytest.mark.parametrize("r", [0.0, -1.0, float("nan")])
def test_device_activation_rejects_non_positive_input_range(r: float) -> None:
    with pytest.raises(ValueError, match="input_range="):
        DeviceActivation(IDEAL, input_range=r)
