"""Per-row weight clipping after each optimiser step (``weight_clip_sigma``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analogtorch as at

PROFILE = at.HardwareProfile(weight_bits=4, prog_noise_std=0.1, training_weight_noise="per-batch")


def _heavy_tailed(shape: tuple[int, ...]) -> torch.Tensor:
    """Weights with outliers: Student-t with 2 degrees of freedom."""
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(shape, generator=gen)
    chi2 = torch.randn((2, *shape), generator=gen).pow(2).sum(0)
    return normal / (chi2 / 2).sqrt()


def _limits(weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """k times each row's sample standard deviation, written out."""
    rows = weight.reshape(weight.shape[0], -1)
    mean = rows.mean(1, keepdim=True)
    var = ((rows - mean) ** 2).sum(1, keepdim=True) / (rows.shape[1] - 1)
    return sigma * var.sqrt()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_a_training_forward_clips_each_row_at_k_standard_deviations(kind):
    profile = PROFILE.replace(weight_clip_sigma=2.0)
    if kind == "linear":
        layer = at.AnalogLinear(64, 8, profile=profile)
        x = torch.rand(5, 64)
    else:
        layer = at.AnalogConv2d(4, 8, 3, profile=profile)
        x = torch.rand(5, 4, 6, 6)
    with torch.no_grad():
        layer.weight.copy_(_heavy_tailed(tuple(layer.weight.shape)))
    before = layer.weight.detach().clone()
    limit = _limits(before, 2.0).view(-1, *[1] * (before.dim() - 1))
    layer.train()(x)
    expected = torch.maximum(torch.minimum(before, limit), -limit)
    assert torch.allclose(layer.weight, expected, rtol=1e-6, atol=0)
    assert bool((before.abs() > limit).any())  # the test clips something


def test_clipping_happens_once_per_optimiser_step_and_not_in_eval_or_on_chips():
    layer = at.AnalogLinear(64, 8, profile=PROFILE.replace(weight_clip_sigma=2.0))
    with torch.no_grad():
        layer.weight.copy_(_heavy_tailed((8, 64)))
    x = torch.rand(5, 64)
    layer.eval()(x)
    with at.Chip(PROFILE, seed=0).deploy(layer):
        layer(x)
    assert torch.equal(layer.weight, _heavy_tailed((8, 64)))  # eval and chips leave them
    layer.train()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.0)  # a step that changes nothing
    loss = layer(x).sum() + layer(x).sum()  # two forwards, one backward: accumulation works
    clipped = layer.weight.detach().clone()
    loss.backward()
    layer(x)
    assert torch.equal(layer.weight, clipped)  # same weights: not clipped again (std shrinks)
    optimizer.step()
    layer(x)
    assert not torch.equal(layer.weight, clipped)  # after a step: clipped at the new std


def test_without_weight_clip_sigma_the_weights_are_the_optimiser_s():
    layer = at.AnalogLinear(64, 8, profile=PROFILE)
    with torch.no_grad():
        layer.weight.copy_(_heavy_tailed((8, 64)))
    layer.train()(torch.rand(5, 64))
    assert torch.equal(layer.weight, _heavy_tailed((8, 64)))


def test_the_noisy_presets_clip_and_the_bad_values_are_refused():
    for name in ("seed-4bit-10pct", "pcm", "rram"):
        assert at.HardwareProfile.preset(name).weight_clip_sigma == 2.5
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(at.ProfileError, match="weight_clip_sigma"):
            at.HardwareProfile(weight_clip_sigma=bad)


def test_clipped_training_is_deterministic_and_learns():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 16, generator=gen), torch.randint(0, 3, (256,), generator=gen)

    def run() -> tuple[torch.Tensor, float]:
        torch.manual_seed(0)
        model = at.convert(
            nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)),
            PROFILE.replace(weight_clip_sigma=2.5),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        first = None
        for _ in range(60):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            first = first if first is not None else float(loss.detach())
            loss.backward()
            optimizer.step()
        return model[0].weight.detach(), float(loss.detach()) / first

    (w1, ratio), (w2, _) = run(), run()
    assert torch.equal(w1, w2)
    assert ratio < 0.7


def test_rows_without_spread_and_single_input_layers_are_left_alone():
    """std 0 (a row of equal weights) or undefined (one weight per row): no clipping, no NaN."""
    profile = PROFILE.replace(weight_clip_sigma=2.5)
    layer = at.AnalogLinear(12, 2, profile=profile)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.3] * 12, [0.0] * 11 + [9.0]]))
    layer.train()(torch.rand(4, 12))
    # one outlier a among n = 12 zeros-and-a: sample std = a / sqrt(n), limit 2.5 a / sqrt(12)
    assert torch.equal(layer.weight[0], torch.full((12,), 0.3))
    assert layer.weight[1, 11].item() == pytest.approx(2.5 * 9.0 / 12**0.5, rel=1e-6)
    assert torch.equal(layer.weight[1, :11], torch.zeros(11))
    single = at.AnalogLinear(1, 3, profile=profile)
    before = single.weight.detach().clone()
    single.train()(torch.rand(4, 1))
    assert torch.equal(single.weight, before)
