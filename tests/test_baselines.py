"""Hardware-aware training baselines (`analogtorch.train.baselines`).

Each baseline's defining behaviour is checked: QAT forward weights lie on a ``b``-bit grid
per row while the STE passes gradients to the float weights; Noisy Machines noise appears
only in training, with the configured std ``η (W_max − W_min)``; variance-aware training
draws a different level each step inside the configured range; noise-aware normalisation
re-estimates BatchNorm statistics to the noisy activations' statistics (checked against a
hand computation).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analogtorch.train.baselines import (
    NoiseInjection,
    NoiseLevelSampler,
    QATWrapper,
    VarianceAwareNoiseInjection,
    noise_aware_normalization,
    noise_injection_convert,
    qat_convert,
    range_noise,
    variance_aware_convert,
)


def _linear(n_in: int = 16, n_out: int = 8, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


# -- QAT + STE --------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_qat_forward_weights_on_b_bit_grid_per_row(bits: int) -> None:
    layer = _linear(64, 8)
    wq = QATWrapper(layer, weight_bits=bits).forward_weight().detach()
    step = 1.0 / (2 ** (bits - 1) - 1)
    scale = layer.weight.detach().abs().amax(dim=1, keepdim=True)
    for row in range(wq.shape[0]):
        assert wq[row].unique().numel() <= 2**bits
    codes = wq / scale / step
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    # quantisation error at most half a step of each row
    assert ((wq - layer.weight.detach()).abs() <= 0.5 * step * scale + 1e-6).all()


def test_qat_ste_gradient_reaches_float_weights() -> None:
    layer = _linear()
    qat = QATWrapper(layer, weight_bits=3)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    g_out = torch.randn(5, 8, generator=torch.Generator().manual_seed(2))
    (qat(x) * g_out).sum().backward()
    # STE: dL/dW equals dL/dW_q of the quantised linear map
    wq = qat.forward_weight().detach().requires_grad_(True)
    (F.linear(x, wq, layer.bias) * g_out).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    torch.testing.assert_close(layer.weight.grad, wq.grad)
    torch.testing.assert_close(layer.weight.grad, g_out.T @ x)


def test_qat_convert_wraps_conv_and_linear_and_quantises_activations() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    qat_convert(model, weight_bits=4, act_bits=3)
    assert isinstance(model[0], QATWrapper) and isinstance(model[3], QATWrapper)
    conv = model[0]
    w = conv.forward_weight().detach().reshape(4, -1)
    assert all(w[r].unique().numel() <= 16 for r in range(4))
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    out = model(x)
    assert out.shape == (2, 3)
    # the conv sees its input on a 3-bit grid: output equals the conv of the quantised input
    x_range = x.abs().amax()
    xq = torch.round(x / x_range * 3).clamp(-4, 3) / 3 * x_range
    assert xq.unique().numel() <= 8
    expected = F.conv2d(xq, conv.forward_weight(), conv.module.bias)
    torch.testing.assert_close(conv(x), expected)
    out.sum().backward()
    assert model[0].module.weight.grad is not None and model[3].module.weight.grad is not None


def test_qat_rejects_bad_bits() -> None:
    with pytest.raises(ValueError, match="bits=1"):
        QATWrapper(_linear(), weight_bits=1)
    with pytest.raises(ValueError, match="act_bits"):
        QATWrapper(_linear(), weight_bits=4, act_bits=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nn\.Linear or nn\.Conv2d"):
        QATWrapper(nn.ReLU(), weight_bits=4)


# -- Noisy Machines noise injection -----------------------------------------------------------


def test_noise_injection_only_in_training() -> None:
    layer = _linear()
    noisy = NoiseInjection(layer, eta=0.05, seed=0)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    clean = layer(x)
    noisy.eval()
    assert torch.equal(noisy(x), clean)
    noisy.train()
    a, b = noisy(x), noisy(x)
    assert not torch.allclose(a, clean) and not torch.allclose(a, b)  # fresh draw each call


def test_noise_injection_std_matches_eta_times_weight_range() -> None:
    layer = _linear(64, 64)
    eta = 0.04
    noisy = NoiseInjection(layer, eta=eta, seed=7).train()
    w = layer.weight.detach()
    expected = eta * (w.max() - w.min()).item()
    deltas = torch.stack([noisy.forward_weight().detach() - w for _ in range(20)])
    assert abs(deltas.std().item() / expected - 1.0) < 0.03
    assert abs(deltas.mean().item()) < 0.03 * expected


def test_noise_injection_seeded_and_gradient_passes() -> None:
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    outs = []
    for _ in range(2):
        model = noise_injection_convert(nn.Sequential(_linear(), nn.Tanh(), _linear(8, 2)), 0.1, 3)
        out = model(x)
        out.sum().backward()
        assert model[0].module.weight.grad is not None
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1])
    with pytest.raises(ValueError, match=r"eta=1\.5"):
        NoiseInjection(_linear(), eta=1.5)
    with pytest.raises(ValueError, match="seed=-1"):
        NoiseInjection(_linear(), eta=0.1, seed=-1)


def test_range_noise_is_detached_and_zero_for_eta_zero() -> None:
    w = torch.randn(8, 8, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    assert not range_noise(w, 0.1, gen).requires_grad
    assert torch.count_nonzero(range_noise(w, 0.0, gen)) == 0


# -- variance-aware noisy training ------------------------------------------------------------


def test_variance_aware_samples_levels_in_range_across_steps() -> None:
    model = variance_aware_convert(
        nn.Sequential(_linear(), nn.ReLU(), _linear(8, 4)), eta_min=0.01, eta_max=0.1, seed=0
    )
    sampler = model.noise_level_sampler
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(60):
        model(x)
        # one level per step, shared by every layer
        assert model[0].current_eta() == model[2].current_eta() == sampler.eta
    levels = torch.tensor(sampler.history)
    assert levels.numel() == 60 and levels.unique().numel() == 60
    assert levels.min() >= 0.01 and levels.max() <= 0.1
    assert levels.min() < 0.02 and levels.max() > 0.09  # covers the range
    model.eval()
    clean = nn.Sequential(model[0].module, nn.ReLU(), model[2].module)
    assert torch.equal(model(x), clean(x))
    assert len(sampler.history) == 60  # no draw in eval


def test_variance_aware_step_noise_std_follows_drawn_level() -> None:
    layer = _linear(64, 64)
    wrapper = VarianceAwareNoiseInjection(layer, 0.01, 0.2, seed=5).train()
    w = layer.weight.detach()
    w_range = (w.max() - w.min()).item()
    ratios = []
    for _ in range(10):
        delta = wrapper.forward_weight().detach() - w
        ratios.append(delta.std().item() / (wrapper.sampler.history[-1] * w_range))
    assert max(abs(r - 1.0) for r in ratios) < 0.05
    assert len(set(wrapper.sampler.history)) == 10


def test_noise_level_sampler_log_uniform_and_errors() -> None:
    s = NoiseLevelSampler(0.001, 0.1, seed=0, distribution="log-uniform")
    levels = torch.tensor([s.resample() for _ in range(400)])
    assert levels.min() >= 0.001 and levels.max() <= 0.1
    # log-uniform: about half the draws below the geometric midpoint 0.01
    assert abs((levels < 0.01).float().mean().item() - 0.5) < 0.1
    with pytest.raises(ValueError, match=r"eta_max=0\.01 < eta_min=0\.1"):
        NoiseLevelSampler(0.1, 0.01)
    with pytest.raises(ValueError, match="eta_min=0"):
        NoiseLevelSampler(0.0, 0.1, distribution="log-uniform")
    with pytest.raises(ValueError, match="distribution='normal'"):
        NoiseLevelSampler(0.0, 0.1, distribution="normal")


# -- noise-aware normalisation ----------------------------------------------------------------


def _bn_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6))
    model.train()
    with torch.no_grad():  # non-trivial starting statistics
        for _ in range(3):
            model(torch.randn(32, 8) * 2 + 1)
    return model.eval()


def _hand_stats(
    weight: torch.Tensor, bias: torch.Tensor, batches: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    acts = [x @ weight.T + bias for x in batches]
    mean = torch.stack([a.mean(0) for a in acts]).mean(0)
    var = torch.stack([a.var(0, unbiased=True) for a in acts]).mean(0)
    return mean, var


def test_noise_aware_normalization_matches_noisy_activation_stats() -> None:
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(32, 8, generator=gen) for _ in range(3)]

    noisy = noise_aware_normalization(model, batches, eta=0.1, seed=0)

    for k, v in model.state_dict().items():  # input model untouched
        assert torch.equal(v, before[k])
    assert not noisy.training and not noisy[1].training
    assert noisy[1].momentum == model[1].momentum
    assert int(noisy[1].num_batches_tracked) == 3
    w_noisy = noisy[0].weight.detach()
    assert not torch.allclose(w_noisy, model[0].weight)
    mean, var = _hand_stats(w_noisy, noisy[0].bias.detach(), batches)
    torch.testing.assert_close(noisy[1].running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(noisy[1].running_var, var, atol=1e-5, rtol=1e-5)
    # the noisy statistics differ from the clean ones on the same data
    clean_mean, clean_var = _hand_stats(model[0].weight.detach(), model[0].bias.detach(), batches)
    assert (noisy[1].running_mean - clean_mean).abs().max() > 1e-3
    assert not torch.allclose(noisy[1].running_var, clean_var, rtol=1e-3)


def test_noise_aware_normalization_programs_range_noise() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.BatchNorm1d(128)).eval()
    noisy = noise_aware_normalization(model, [torch.randn(4, 128)], eta=0.05, seed=1)
    w = model[0].weight.detach()
    delta = noisy[0].weight.detach() - w
    assert abs(delta.std().item() / (0.05 * (w.max() - w.min()).item()) - 1.0) < 0.03


def test_noise_aware_normalization_eta_zero_is_plain_recalibration_and_errors() -> None:
    model = _bn_model()
    batches = [torch.randn(16, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    out = noise_aware_normalization(model, batches, eta=0.0)
    torch.testing.assert_close(out[0].weight, model[0].weight)
    mean, var = _hand_stats(model[0].weight.detach(), model[0].bias.detach(), batches)
    torch.testing.assert_close(out[1].running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1].running_var, var, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="calibration_batches is empty"):
        noise_aware_normalization(model, [], eta=0.1)
    with pytest.raises(ValueError, match="no BatchNorm"):
        noise_aware_normalization(nn.Sequential(nn.Linear(2, 2)), [torch.randn(2, 2)], eta=0.1)
    with pytest.raises(ValueError, match=r"eta=-0\.1"):
        noise_aware_normalization(model, batches, eta=-0.1)
