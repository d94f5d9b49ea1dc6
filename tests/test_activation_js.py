"""Simulator-vs-chip activation JS (`train.activations`) against exact references."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats
from scipy.spatial.distance import jensenshannon
from torch import nn

from analogtorch.hardware.chip import Chip
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.convert import convert
from analogtorch.train.activations import activation_js, histogram_js, recorded_outputs


def _samples_of(counts: list[int]) -> torch.Tensor:
    """The integers 0..K-1, value k repeated counts[k] times: an exact discrete law."""
    return torch.cat([torch.full((n,), float(k)) for k, n in enumerate(counts)])


def test_histogram_js_of_two_discrete_laws_is_exact():
    # integer values 0..3 with both sides spanning [0, 3]: 4 bins of width 3/4 hold one
    # integer each, so the histograms are the laws themselves
    p, q = [10, 20, 30, 40], [40, 5, 5, 50]
    reference = jensenshannon([n / 100 for n in p], [n / 100 for n in q]) ** 2  # natural log
    assert histogram_js(_samples_of(p), _samples_of(q), bins=4) == pytest.approx(reference)


def test_histogram_js_is_zero_for_equal_laws_and_ln2_for_disjoint_ones():
    a = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert histogram_js(a, a.flip(0)) == 0.0
    assert histogram_js(a, a + 100.0) == pytest.approx(math.log(2.0))
    assert histogram_js(torch.ones(5), torch.ones(7)) == 0.0


def test_histogram_js_of_two_gaussians_matches_the_integral():
    # JS(N(0,1) ‖ N(1,1)) by quadrature; the histogram estimate on 4e5 samples a side with
    # 400 bins has bias ~ (B-1)/(4N) = 2.5e-4 and binning error of the same order
    p, q = stats.norm(0.0, 1.0), stats.norm(1.0, 1.0)

    def integrand(x: float) -> float:
        m = 0.5 * (p.pdf(x) + q.pdf(x))
        return 0.5 * (p.pdf(x) * math.log(p.pdf(x) / m) + q.pdf(x) * math.log(q.pdf(x) / m))

    exact = integrate.quad(integrand, -12, 13)[0]
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(400_000, generator=gen, dtype=torch.float64)
    b = torch.randn(400_000, generator=gen, dtype=torch.float64) + 1.0
    assert histogram_js(a, b, bins=400) == pytest.approx(exact, abs=2e-3)
    assert 0.1 < exact < math.log(2.0)


def test_histogram_js_stays_in_its_bounds_and_refuses_bad_arguments():
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        a, b = torch.randn(50, generator=gen), 3 * torch.rand(30, generator=gen)
        assert 0.0 <= histogram_js(a, b, bins=8) <= math.log(2.0) + 1e-12
    with pytest.raises(ValueError, match="bins"):
        histogram_js(a, b, bins=1)
    with pytest.raises(ValueError, match="samples on both sides"):
        histogram_js(a, torch.zeros(0))


def _model(profile: HardwareProfile) -> nn.Module:
    torch.manual_seed(0)
    return convert(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), profile, seed=0)


def test_noise_free_hardware_gives_zero_js_on_every_layer():
    profile = HardwareProfile.preset("ideal").replace(weight_bits=4)
    model = _model(profile)
    inputs = list(torch.randn(200, 8, generator=torch.Generator().manual_seed(3)).split(100))
    js = activation_js(model, inputs, [Chip(profile, 0), Chip(profile, 1)], 3600.0, seed=0)
    assert list(js) == ["0", "2"]
    assert all(v["chips"] == [0.0, 0.0] and v["floor"] == 0.0 for v in js.values())


def test_js_grows_with_the_chips_noise_and_the_model_is_left_unchanged():
    profile = HardwareProfile.preset("seed-4bit-10pct")
    model = _model(profile)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = list(torch.randn(2000, 8, generator=torch.Generator().manual_seed(4)).split(500))
    chips = [Chip(profile.scale_noise(s), 0) for s in (1.0, 6.0)]
    js = activation_js(model, inputs, chips, 0.0, seed=0)
    nominal, noisy = js["2"]["chips"]
    assert noisy > 2 * nominal
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(getattr(m, "eval_noise", False) for m in model.modules())


def test_recorded_outputs_keeps_the_graph_and_removes_its_hooks():
    model = _model(HardwareProfile.preset("ideal"))
    with recorded_outputs(model) as outputs:
        model(torch.randn(3, 8)).sum()
    assert [o.shape for o in outputs["2"]] == [torch.Size([3, 4])] and outputs["2"][0].requires_grad
    model(torch.randn(3, 8))
    assert len(outputs["0"]) == 1
