"""Convolutional hybrid DEQ: the 8-bit digital conv layer and encoder, the explicit twin of a
hybrid DEQ, the digital-DEQ cost model and the optional study keys."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from analogtorch.deq import SolverOptions
from analogtorch.deq.conv_encoder import conv_encoder
from analogtorch.deq.digital_cost import digital_core_cost, digital_iterations
from analogtorch.deq.explicit import ExplicitHybrid
from analogtorch.deq.hybrid import build_hybrid_deq
from analogtorch.deq.study import complete_config
from analogtorch.energy.baselines import DigitalBaseline
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.quantized import QuantizedConv2d
from analogtorch.runs import config_hash

PCM = HardwareProfile.preset("pcm")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hybrid(width: int = 12, seed: int = 0):
    encoder = conv_encoder((1, 8, 8), width, channels=(3, 4), seed=seed)
    return build_hybrid_deq(64, 5, PCM, width=width, encoder=encoder, seed=seed)


def test_quantized_conv_equals_its_grid_applied_to_unfolded_patches():
    torch.manual_seed(0)
    conv = QuantizedConv2d(3, 5, 3, padding=1, weight_bits=4)
    x = torch.randn(2, 3, 6, 6, generator=_gen(1))
    # Reference: per output channel, scale s = max |w| and round w / s to 7 levels each side.
    w = conv.weight.detach().reshape(5, -1)
    s = w.abs().amax(dim=1, keepdim=True)
    grid = torch.round(w / s * 7) / 7 * s
    patches = F.unfold(x, 3, padding=1)  # (N, 27, 36)
    expected = (grid @ patches + conv.bias.detach()[:, None]).reshape(2, 5, 6, 6)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    assert len(torch.unique(conv.quantized_weight()[0])) <= 15


def test_quantized_conv_passes_gradients_straight_through():
    conv = QuantizedConv2d(1, 2, 3, weight_bits=3)
    conv(torch.randn(1, 1, 5, 5, generator=_gen(2))).sum().backward()
    assert conv.weight.grad is not None and bool(conv.weight.grad.abs().sum() > 0)


def test_conv_encoder_maps_flat_images_to_the_core_width_reproducibly():
    state = torch.random.get_rng_state()
    a = conv_encoder((1, 28, 28), 16, channels=(4, 8), seed=3)
    b = conv_encoder((1, 28, 28), 16, channels=(4, 8), seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    x = torch.randn(5, 784, generator=_gen(4))
    assert a(x).shape == (5, 16)
    torch.testing.assert_close(a(x), b(x))
    assert a[-1].in_features == 8 * 7 * 7  # two 2x2 pools: 28 -> 14 -> 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_shape": (28, 28)}, "expected (channels, height, width)"),
        ({"channels": ()}, "need at least one stage"),
        ({"kernel_size": 4}, "kernel_size=4"),
        ({"channels": (2, 2, 2, 2, 2, 2)}, "shrink a 28×28 image to nothing"),
    ],
)
def test_conv_encoder_refuses_bad_shapes(kwargs, message):
    args = {"image_shape": (1, 28, 28), "width": 8} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        conv_encoder(**args)


def test_explicit_twin_is_the_core_applied_once_to_the_encoder_state():
    model = _hybrid()
    twin = ExplicitHybrid.from_hybrid(model)
    model.eval(), twin.eval()
    x = torch.randn(4, 64, generator=_gen(5))
    with torch.no_grad():
        model(x)  # initialises the converters' full scale, copied below
        twin = ExplicitHybrid.from_hybrid(model)
        u = model.dac(model.encoder(x))
        core = model.core
        expected = model.head(model.adc(core(core(torch.zeros(4, 12), u), u)))
        torch.testing.assert_close(twin(x), expected)
        # On the ideal path the first step (crossbar read at z = 0) gives σ(u).
        twin.set_profile(HardwareProfile.preset("ideal"))
        twin(x)
        u = twin.encoder(x)
        once = torch.tanh(torch.tanh(u) @ core.feedback.weight.T + u)
        torch.testing.assert_close(twin.last_state, once, rtol=1e-6, atol=1e-6)
    assert twin.last_forward_stats.iterations == 2


def test_explicit_twin_has_the_same_parameters_and_differs_from_the_equilibrium():
    model = _hybrid()
    twin = ExplicitHybrid.from_hybrid(model)
    shared = {id(p) for p in model.parameters()} & {id(p) for p in twin.parameters()}
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in twin.parameters()) == count
    assert len(shared) == len(list(model.parameters())) - 2  # all but the two full scales
    model.set_profile(HardwareProfile.preset("ideal"))
    with torch.no_grad():
        core = model.core
        core.feedback.weight.mul_(0.0).add_(0.8 * torch.eye(12))  # strong feedback
        x = torch.randn(3, 64, generator=_gen(6))
        assert not torch.allclose(model(x), twin(x), atol=1e-3)


def test_explicit_twin_trains_by_backprop_through_its_steps():
    twin = ExplicitHybrid.from_hybrid(_hybrid(), steps=3)
    x = torch.randn(8, 64, generator=_gen(7))
    F.cross_entropy(twin(x), torch.arange(8) % 5).backward()
    assert bool(twin.core.feedback.weight.grad.abs().sum() > 0)
    assert bool(twin.encoder[1].weight.grad.abs().sum() > 0)
    with pytest.raises(ValueError, match="steps=0"):
        ExplicitHybrid.from_hybrid(_hybrid(), steps=0)


def test_digital_iterations_of_a_feedback_free_core_stop_at_once():
    model = _hybrid()
    with torch.no_grad():
        model.core.feedback.weight.zero_()  # z* = σ(u): one map evaluation reaches it
    x = torch.randn(5, 64, generator=_gen(8))
    before = model.core.feedback.profile
    counts = digital_iterations(model, x, SolverOptions(tol=1e-6, max_iter=50))
    assert len(counts) == 5 and max(counts) <= 2
    assert model.core.feedback.profile is before  # the model itself is untouched


def test_digital_core_cost_follows_the_baseline_constants():
    b = DigitalBaseline.preset("asic-int8")
    n, k, m = 64, 10, 5
    macs = k * (n * n + 2 * m * n)
    fetch = b.weight_j_per_byte * max(n * n / b.weight_memory_ref_bytes, 8192 / 2**20) ** 0.5
    energy = (
        macs * b.mac_j
        + n * n * (fetch + (k - 1) * b.activation_j_per_byte)
        + 2 * n * k * b.activation_j_per_byte
        + n * k * b.op_j
    )
    cost = digital_core_cost(n, k, "asic-int8", history=m)
    assert cost["macs"] == macs
    assert cost["energy_j"] == pytest.approx(energy, rel=1e-12)
    assert cost["latency_s"] == pytest.approx(macs / 2e12, rel=1e-12)


def test_optional_encoder_key_leaves_older_configs_fingerprint_alone():
    base = {"name": "s", "task": "fashion-mnist"}
    plain = complete_config(dict(base))
    assert "encoder" not in plain["model"]
    assert config_hash(plain) == config_hash(complete_config({**base, "model": {}}))
    conv = complete_config({**base, "model": {"encoder": {}}, "arms": ["explicit"]})
    assert conv["model"]["encoder"] == {"channels": [32, 64], "kernel_size": 3}
    with pytest.raises(ValueError, match=re.escape("model.encoder.channels.0=0")):
        complete_config({**base, "model": {"encoder": {"channels": [0]}}})


def _relaxation_record(error_relaxation: float, error_solver: float, digital: dict) -> dict:
    """A cell's ``relaxation`` record as ``study._relaxation`` writes it."""
    return {
        "settling_time_s": 4e-7,
        "per_sample": {"settling_time_s": 3e-7, "energy_j": 2e-9},
        "tau_s": 4e-8,
        "solver_iterations": 4,
        "state_difference": 0.1,
        "error_relaxation": error_relaxation,
        "error_solver": error_solver,
        "energy_core_iterative_j": 1e-8,
        "energy_core_relaxation_j": 3e-9,
        "energy_iterative_j": 1e-6,
        "digital_deq": digital,
    }


def test_report_of_an_explicit_study_shows_the_feedback_ablation_and_digital_deq(tmp_path):
    from analogtorch.deq.study_report import summarise

    config = complete_config(
        {"name": "s", "task": "fashion-mnist", "arms": ["physics-aware", "explicit"]}
    )
    chips = {"error": 9.0, "error_ideal": 9.0, "error_std": 0.1, "iterations": 4.0}
    chips |= {"snr_db": 3.0}
    digital = {"iterations": 4.0, "baselines": {"asic-int8": {"latency_s": 3e-8, "energy_j": 2e-7}}}
    relaxation = _relaxation_record(8.0, 7.0, digital)
    common = {"setting": "nominal", "seed": 0, "task_kind": "classification", **chips}
    deq = {"arm": "physics-aware", **common, "as_explicit": {**chips, "error": 8.0}}
    deq |= {"no_feedback": {**chips, "error": 7.0}, "relaxation": relaxation}
    explicit = {"arm": "explicit", **common, "as_deq": {**chips, "error": 6.0}}
    report = summarise(config, [deq, explicit], tmp_path)
    assert "| nominal | physics-aware | 91.00 ± 0.00 | 92.00 ± 0.00 | 93.00 ± 0.00 | — |" in report
    assert "| nominal | explicit | 91.00 ± 0.00 | — | — | 94.00 ± 0.00 |" in report
    assert "digital DEQ on asic-int8 (ns) | 30.000 ± 0.000 |" in report


def test_relaxation_table_shows_regression_errors_in_percent(tmp_path):
    from analogtorch.deq.study_report import summarise

    config = complete_config({"name": "s", "task": "nonlinear", "arms": ["physics-aware"]})
    # relative L2 errors (fractions), as task_error returns them for regression
    relaxation = _relaxation_record(0.08, 0.07, {"iterations": 4.0, "baselines": {}})
    cell = {"arm": "physics-aware", "setting": "nominal", "seed": 0, "task_kind": "regression"}
    cell |= {"error": 0.07, "error_ideal": 0.06, "error_std": 0.01, "iterations": 4.0}
    cell |= {"snr_db": 3.0, "relaxation": relaxation}
    report = summarise(config, [cell], tmp_path)
    assert "| nominal | physics-aware | 6.00 ± 0.00 | 7.00 ± 0.00 |" in report
    assert "| error relaxation / solver (%) | 8.00 ± 0.00 / 7.00 ± 0.00 |" in report
