"""Convolutions through hardware in the loop: unfold → backend mvm → fold.

References: the analog layer's own forward (a noise-free backend on the layer's profile must
reproduce it), and the gradient of ``torch.nn.functional.conv2d`` by autograd.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_hil import ScaledBackend  # a fake chip computing gain · x Wᵀ exactly
from torch import nn

import analogtorch as at
from analogtorch.hil.loop import HardwareLoop
from analogtorch.hil.surrogate_backend import SurrogateBackend
from analogtorch.hil.train import evaluate_on_backend, hil_train
from analogtorch.hil.virtual_chip import VirtualChip

IDEAL = at.HardwareProfile.preset("ideal")
# noise-free, but with DAC, ADC, a sinh device I-V and IR drop: everything deterministic
PHYSICAL = (
    at.HardwareProfile.preset("pcm")
    .scale_noise(0.0)
    .replace(transfer_curve="sinh", transfer_nonlinearity=2.0, wire_resistance_ohm=2.0)
)
CONV_OPTIONS = [
    {"padding": 1},
    {"stride": 2, "padding": (2, 1), "dilation": 2},
    {"padding": 1, "padding_mode": "reflect"},
]


def conv_model(profile: at.HardwareProfile, **options: object) -> nn.Module:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Conv2d(3, 5, 3, **options), nn.ReLU(), nn.Conv2d(5, 4, 1))
    return at.convert(digital, profile).eval()


@pytest.mark.parametrize("options", CONV_OPTIONS, ids=lambda o: ",".join(map(str, o)))
@pytest.mark.parametrize("adc", [None, 8], ids=["ideal-adc", "adc8"])
def test_noise_free_backend_reproduces_the_analog_conv_output(options, adc):
    profile = PHYSICAL.replace(adc_bits=adc)
    model = conv_model(profile, **options)
    x = 2 * torch.rand(2, 3, 9, 8, generator=torch.Generator().manual_seed(1)) - 1
    with torch.no_grad():
        own = model(x)
        backend = SurrogateBackend(profile, time_s=0.0)
        with HardwareLoop(model, backend, mode="backend"):
            via_backend = model(x)
    assert torch.allclose(via_backend, own, rtol=1e-5, atol=1e-6)
    pixels = own.shape[0] * own.shape[2] * own.shape[3]
    assert backend.calls == 2 * pixels  # one read per output pixel and layer


def test_an_unbatched_image_runs_through_the_backend():
    model = conv_model(PHYSICAL, padding=1)
    x = 2 * torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2)) - 1
    with torch.no_grad():
        own = model(x)
        with HardwareLoop(model, SurrogateBackend(PHYSICAL, time_s=0.0), mode="backend"):
            via_backend = model(x)
    assert via_backend.shape == own.shape == (4, 6, 6)
    assert torch.allclose(via_backend, own, rtol=1e-5, atol=1e-6)


def test_hil_conv_value_is_backend_and_gradient_is_the_conv_gradient_at_backend_outputs():
    model = at.convert(nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1)), IDEAL).eval()
    conv = model[0]
    with torch.no_grad():
        conv.input_range.fill_(2.0)
        conv.input_range_initialized.fill_(True)
    gen = torch.Generator().manual_seed(3)
    x = (2 * torch.rand(4, 2, 7, 7, generator=gen) - 1).requires_grad_(True)
    target = torch.randn(4, 3, 4, 4, generator=gen)
    with HardwareLoop(model, ScaledBackend(2.0), mode="hil") as loop:
        y = model(x)
    (0.5 * (y - target).square().sum()).backward()
    w, b = conv.weight, conv.bias
    with torch.no_grad():
        nominal = F.conv2d(x, w, None, stride=2, padding=1)
        assert torch.allclose(y, 2 * nominal + b.reshape(1, -1, 1, 1), atol=1e-5)
        residual = (y - target).detach()  # dL/dy at the backend's output
    # identity twin: the gradient is that of the nominal convolution, at the backend's residual
    w_ref, x_ref = w.detach().clone().requires_grad_(True), x.detach().clone().requires_grad_(True)
    (residual * F.conv2d(x_ref, w_ref, stride=2, padding=1)).sum().backward()
    assert torch.allclose(w.grad, w_ref.grad, atol=1e-4)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(b.grad, residual.sum(dim=(0, 2, 3)), atol=1e-4)
    nominal_pairs, measured_pairs = loop.pairs["0"][-1]
    assert nominal_pairs.shape == measured_pairs.shape == (4 * 4 * 4, 3)  # pixels, channels


def test_hil_train_fine_tunes_a_conv_net_on_a_virtual_chip():
    torch.manual_seed(0)
    digital = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )
    model = at.convert(digital, at.HardwareProfile.preset("pcm"))
    gen = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 3, (48,), generator=gen)
    images = torch.zeros(48, 1, 6, 6)
    for k in range(3):  # class k lights up row band k
        images[labels == k, 0, 2 * k : 2 * k + 2, :] = 1.0
    images += 0.1 * torch.randn(images.shape, generator=gen)
    loader = list(zip(images.split(16), labels.split(16), strict=True))
    before = [p.detach().clone() for p in model.parameters()]
    result = hil_train(model, VirtualChip(seed=0), loader, steps=12, lr=1e-2, calibration_batches=1)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    per_step = 16 * (6 * 6 + 1)  # conv: one read per output pixel; linear: one per sample
    assert result.backend_calls == per_step * (12 + 1)
    assert 0.0 <= evaluate_on_backend(model, VirtualChip(seed=0), loader) <= 1.0


def test_grouped_and_unsupported_layers_are_refused_with_their_name():
    grouped = at.convert(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), IDEAL)
    with pytest.raises(ValueError, match=r"'0'.*groups=2"):
        HardwareLoop(grouped, ScaledBackend(1.0))
    conv1d = at.convert(nn.Sequential(nn.Conv1d(2, 3, 3)), IDEAL)
    with pytest.raises(ValueError, match="AnalogConv1d"):
        HardwareLoop(conv1d, ScaledBackend(1.0))
