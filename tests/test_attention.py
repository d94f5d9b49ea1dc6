"""`AnalogMultiheadAttention`: torch's attention with its four projections on crossbars.

References are torch's own ``nn.MultiheadAttention`` / ``nn.Transformer*Layer`` modules the
analog ones were converted from; none of them calls analogtorch code.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.hardware.mapping import held_weights
from analogtorch.nn import AnalogLayerMixin, AnalogLinear, AnalogMultiheadAttention, analog_layers

IDEAL = at.HardwareProfile.preset("ideal")
PCM = at.HardwareProfile.preset("pcm")
# A fixed weight range far above every weight: no clipping, no quantisation, no noise, yet
# not the ideal shortcut: the products run through the hardware surrogate.
SURROGATE_EXACT = at.HardwareProfile(weight_range=1e3)
QUANTISED = at.HardwareProfile(dac_bits=8, adc_bits=8, weight_bits=6)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
E, HEADS, N, L, S = 16, 4, 3, 5, 6
TOL = {"atol": 1e-5, "rtol": 1e-5}


def make_attention(seed: int = 0, **kwargs: object) -> nn.MultiheadAttention:
    torch.manual_seed(seed)
    return nn.MultiheadAttention(E, HEADS, **kwargs)


def batch_layout(x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """(N, T, F) -> the layout a module with ``batch_first`` takes."""
    return x if batch_first else x.transpose(0, 1).contiguous()


def masks(case: str, seed: int = 1) -> dict[str, object]:
    """Forward keyword arguments of one mask case, for N queries of length L over S keys."""
    gen = torch.Generator().manual_seed(seed)
    padding = torch.zeros(N, S, dtype=torch.bool)
    padding[0, -2:] = True
    padding[2, -1] = True
    causal = torch.ones(L, S, dtype=torch.bool).triu(1)
    return {
        "none": {},
        "key_padding_bool": {"key_padding_mask": padding},
        "key_padding_float": {
            "key_padding_mask": torch.zeros(N, S).masked_fill(padding, float("-inf"))
        },
        "attn_mask_bool_2d": {"attn_mask": causal},
        "attn_mask_float_3d": {"attn_mask": torch.randn(N * HEADS, L, S, generator=gen)},
        "causal_hint": {"attn_mask": causal, "is_causal": True},
        "padding_and_attn_mask": {"key_padding_mask": padding, "attn_mask": causal},
    }[case]


def qkv(batch_first: bool, kdim: int = E, vdim: int = E, seed: int = 2) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shapes = ((N, L, E), (N, S, kdim), (N, S, vdim))
    return tuple(batch_layout(torch.randn(s, generator=gen), batch_first) for s in shapes)


# -- structure -----------------------------------------------------------------------------


def test_converted_attention_is_a_multihead_attention_whose_projections_are_analog():
    analog = at.convert(nn.Sequential(make_attention()), PCM)[0]
    assert isinstance(analog, nn.MultiheadAttention)
    assert not isinstance(analog, AnalogLayerMixin)
    assert all(isinstance(getattr(analog, p), AnalogLinear) for p in PROJECTIONS)
    for name in ("in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight"):
        assert getattr(analog, name) is None
    assert next(analog.parameters(recurse=False), None) is None  # weights live in the children
    assert sorted(analog_layers(analog)) == sorted(PROJECTIONS)
    assert [getattr(analog, p).layer_name for p in PROJECTIONS] == [f"0.{p}" for p in PROJECTIONS]
    assert len({getattr(analog, p).noise_seed for p in PROJECTIONS}) == 4


def test_convert_makes_a_transformer_encoder_analog_down_to_every_weight_layer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, HEADS, 32)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    converted = at.convert(encoder, PCM)
    expected = {
        f"layers.{i}.{name}"
        for i in range(2)
        for name in [*(f"self_attn.{p}" for p in PROJECTIONS), "linear1", "linear2"]
    }
    assert set(analog_layers(converted)) == expected
    assert isinstance(converted.layers[1].self_attn, AnalogMultiheadAttention)
    assert converted.layers[1].self_attn.layer_name == "layers.1.self_attn"


def test_a_new_attention_starts_from_the_weights_torch_would_draw():
    torch.manual_seed(4)
    digital = nn.MultiheadAttention(E, HEADS, kdim=12, vdim=10)
    torch.manual_seed(4)
    analog = AnalogMultiheadAttention(E, HEADS, kdim=12, vdim=10, profile=IDEAL)
    torch.testing.assert_close(analog.q_proj.weight, digital.q_proj_weight)
    torch.testing.assert_close(analog.v_proj.weight, digital.v_proj_weight)
    torch.testing.assert_close(analog.k_proj.bias, digital.in_proj_bias[E : 2 * E])
    torch.testing.assert_close(analog.out_proj.weight, digital.out_proj.weight)


def test_a_digital_state_dict_loads_strictly():
    digital = make_attention(add_bias_kv=True)
    analog = AnalogMultiheadAttention(E, HEADS, add_bias_kv=True, profile=PCM)
    analog.load_state_dict(digital.state_dict())
    torch.testing.assert_close(analog.k_proj.weight, digital.in_proj_weight[E : 2 * E])
    torch.testing.assert_close(analog.bias_v, digital.bias_v)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"embed_dim": 10, "num_heads": 4}, ValueError, "not divisible by num_heads=4"),
        ({"embed_dim": 0, "num_heads": 1}, ValueError, "embed_dim=0"),
        ({"embed_dim": 8, "num_heads": 2, "dropout": 1.5}, ValueError, "dropout=1.5"),
        ({"embed_dim": 8, "num_heads": 2, "noise_seed": 1.0}, TypeError, "noise_seed=1.0"),
    ],
)
def test_invalid_constructor_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        AnalogMultiheadAttention(**kwargs, profile=PCM)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a, x: a(x, x[:, :2], x), "differ in their sequence or batch sizes"),
        (lambda a, x: a(x, x, x, attn_mask=torch.zeros(2, 2, dtype=torch.bool)), "attn_mask"),
        (lambda a, x: a(x, x, x, key_padding_mask=torch.zeros(3, 9)), "key_padding_mask"),
        (lambda a, x: a(x[0, 0], x[0, 0], x[0, 0]), "3-D .* 2-D"),
    ],
)
def test_inputs_torch_refuses_are_refused_naming_them(call, match):
    analog = AnalogMultiheadAttention(E, HEADS, batch_first=True, profile=PCM)
    with pytest.raises(ValueError, match=match):
        call(analog, torch.randn(N, L, E))


def test_a_wrong_feature_size_names_the_projection():
    analog = at.convert(nn.Sequential(make_attention(kdim=12)), PCM)[0]
    x = torch.randn(L, N, E)
    with pytest.raises(ValueError, match=r"'0\.k_proj'"):
        analog(x, x, x)


# -- equivalence with torch ----------------------------------------------------------------


@pytest.mark.parametrize("profile", [IDEAL, SURROGATE_EXACT], ids=["ideal", "surrogate"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(
    "case",
    [
        "none",
        "key_padding_bool",
        "key_padding_float",
        "attn_mask_bool_2d",
        "attn_mask_float_3d",
        "causal_hint",
        "padding_and_attn_mask",
    ],
)
@pytest.mark.parametrize("need_weights", [True, False])
def test_attention_matches_torch_with_masks_in_both_layouts(
    profile, batch_first, case, need_weights
):
    digital = make_attention(batch_first=batch_first).eval()
    analog = AnalogMultiheadAttention.from_digital(digital, profile, noise_seed=0)
    q, k, v = qkv(batch_first)
    kwargs = {**masks(case), "need_weights": need_weights}
    with torch.no_grad():  # eval under no_grad: torch's own fast path where it applies
        expected = digital(q, k, v, **kwargs)
        got = analog(q, k, v, **kwargs)
    torch.testing.assert_close(got[0], expected[0], **TOL)
    if need_weights:
        torch.testing.assert_close(got[1], expected[1], **TOL)
    else:
        assert got[1] is None


@pytest.mark.parametrize("profile", [IDEAL, SURROGATE_EXACT], ids=["ideal", "surrogate"])
@pytest.mark.parametrize(
    "options",
    [
        {"kdim": 12, "vdim": 10},
        {"bias": False},
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"add_bias_kv": True, "add_zero_attn": True, "kdim": 12, "vdim": 10},
    ],
    ids=["kdim-vdim", "no-bias", "bias-kv", "zero-attn", "all"],
)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_attention_options_match_torch_in_eval_and_train(profile, options, mode):
    digital = make_attention(**options).train(mode == "train")  # dropout 0
    analog = at.convert(nn.Sequential(digital), profile)[0]
    q, k, v = qkv(False, options.get("kdim", E), options.get("vdim", E))
    kwargs = {**masks("padding_and_attn_mask"), "average_attn_weights": False}
    expected_y, expected_w = digital(q, k, v, **kwargs)
    got_y, got_w = analog(q, k, v, **kwargs)
    torch.testing.assert_close(got_y, expected_y, **TOL)
    torch.testing.assert_close(got_w, expected_w, **TOL)


@pytest.mark.parametrize("average", [True, False])
def test_unbatched_inputs_give_torch_outputs_and_weights(average):
    digital = make_attention(batch_first=True).eval()
    analog = at.convert(nn.Sequential(digital), SURROGATE_EXACT)[0]
    q, k, v = (t[0] for t in qkv(True))
    padding = torch.tensor([False] * (S - 1) + [True])
    expected = digital(q, k, v, key_padding_mask=padding, average_attn_weights=average)
    got = analog(q, k, v, key_padding_mask=padding, average_attn_weights=average)
    assert got[0].shape == (L, E)
    torch.testing.assert_close(got[0], expected[0], **TOL)
    torch.testing.assert_close(got[1], expected[1], **TOL)


def test_is_causal_without_a_mask_applies_the_causal_mask():
    analog = AnalogMultiheadAttention(E, HEADS, batch_first=True, profile=IDEAL).eval()
    x = torch.randn(N, L, E)
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    torch.testing.assert_close(
        analog(x, x, x, is_causal=True)[0], analog(x, x, x, attn_mask=causal)[0]
    )


def encoder_layer(batch_first: bool, norm_first: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.TransformerEncoderLayer(
        E, HEADS, 32, dropout=0.0, batch_first=batch_first, norm_first=norm_first
    )


@pytest.mark.parametrize("profile", [IDEAL, SURROGATE_EXACT], ids=["ideal", "surrogate"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_transformer_encoder_layer_matches_torch(profile, batch_first, norm_first, mode):
    digital = encoder_layer(batch_first, norm_first).train(mode == "train")
    analog = at.convert(digital, profile)
    x = batch_layout(torch.randn(N, L, E), batch_first)
    padding = torch.zeros(N, L, dtype=torch.bool)
    padding[1, -2:] = True
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    kwargs = {"src_mask": causal, "src_key_padding_mask": padding, "is_causal": True}
    with torch.no_grad():  # in eval: torch's fused kernel for the digital layer
        torch.testing.assert_close(analog(x, **kwargs), digital(x, **kwargs), **TOL)


@pytest.mark.parametrize("profile", [IDEAL, SURROGATE_EXACT], ids=["ideal", "surrogate"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_transformer_decoder_layer_matches_torch(profile, batch_first, mode):
    torch.manual_seed(0)
    digital = nn.TransformerDecoderLayer(E, HEADS, 32, dropout=0.0, batch_first=batch_first)
    digital.train(mode == "train")
    analog = at.convert(digital, profile)
    assert isinstance(analog.multihead_attn, AnalogMultiheadAttention)
    tgt = batch_layout(torch.randn(N, L, E), batch_first)
    memory = batch_layout(torch.randn(N, S, E), batch_first)
    kwargs = {
        "tgt_mask": torch.ones(L, L, dtype=torch.bool).triu(1),
        "tgt_is_causal": True,
        "memory_key_padding_mask": masks("key_padding_bool")["key_padding_mask"],
    }
    with torch.no_grad():
        torch.testing.assert_close(
            analog(tgt, memory, **kwargs), digital(tgt, memory, **kwargs), **TOL
        )


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_converted_transformer_encoder_matches_torch_on_padded_batches_in_eval():
    torch.manual_seed(0)
    digital = nn.TransformerEncoder(encoder_layer(batch_first=True), num_layers=2).eval()
    analog = at.convert(digital, SURROGATE_EXACT)
    x = torch.randn(N, L, E)
    padding = torch.zeros(N, L, dtype=torch.bool)
    padding[0, -2:] = True
    with torch.no_grad():  # torch packs this batch as nested tensors, zeroing padded places
        expected = digital(x, src_key_padding_mask=padding)
        got = analog(x, src_key_padding_mask=padding)
    torch.testing.assert_close(got[~padding], expected[~padding], **TOL)


# -- torch's fused inference path is never taken -------------------------------------------


def test_encoder_layer_in_eval_under_no_grad_runs_the_analog_projections(monkeypatch):
    fused_calls: list[int] = []
    fused = torch._transformer_encoder_layer_fwd
    monkeypatch.setattr(
        torch,
        "_transformer_encoder_layer_fwd",
        lambda *args: fused_calls.append(1) or fused(*args),
    )
    analog_calls: list[str] = []
    forward = AnalogLinear.forward  # patched on the class: forward hooks would block the path
    monkeypatch.setattr(
        AnalogLinear,
        "forward",
        lambda self, x: analog_calls.append(self.layer_name) or forward(self, x),
    )
    digital = encoder_layer(batch_first=True).eval()
    analog = at.convert(digital, IDEAL).eval()
    x = torch.randn(N, L, E)
    with torch.no_grad():
        digital(x)
        assert fused_calls == [1]  # the digital layer takes the fused kernel: the probe works
        analog(x)
    assert fused_calls == [1]
    expected = [f"self_attn.{p}" for p in PROJECTIONS] + ["linear1", "linear2"]
    assert sorted(analog_calls) == sorted(expected)


def test_eval_noise_reaches_the_projections_of_an_encoder_layer_under_no_grad():
    layer = encoder_layer(batch_first=True)
    analog = at.convert(layer, PCM, skip=["linear1", "linear2"]).eval()
    at.set_eval_noise(analog, True)
    x = torch.randn(N, L, E)
    with torch.no_grad():
        first, second = analog(x), analog(x)
    assert not torch.allclose(first, second)  # fresh read noise in the attention projections


def test_analog_feed_forward_under_digital_attention_is_not_skipped_by_the_fused_kernel():
    """The fused eval kernel would read linear1/linear2's weights directly."""
    layer = encoder_layer(batch_first=True)
    analog = at.convert(layer, {"self_attn": None, "*": PCM}).eval()
    at.set_eval_noise(analog, True)
    x = torch.randn(N, L, E)
    with torch.no_grad():
        first, second = analog(x), analog(x)
    assert not torch.allclose(first, second)  # fresh read noise in linear1 / linear2
    encoder = at.convert(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), PCM)
    assert not encoder.use_nested_tensor


# -- training ------------------------------------------------------------------------------


def test_gradients_match_torch_for_every_projection_weight():
    digital = make_attention(kdim=12, vdim=10)
    analog = at.convert(nn.Sequential(digital), SURROGATE_EXACT)[0]
    q, k, v = qkv(False, 12, 10)
    for module in (digital, analog):
        module(q, k, v, **masks("padding_and_attn_mask"))[0].square().sum().backward()
    expected = {
        "q_proj.weight": digital.q_proj_weight.grad,
        "k_proj.weight": digital.k_proj_weight.grad,
        "v_proj.weight": digital.v_proj_weight.grad,
        "out_proj.weight": digital.out_proj.weight.grad,
        "k_proj.bias": digital.in_proj_bias.grad[E : 2 * E],
        "out_proj.bias": digital.out_proj.bias.grad,
    }
    for name, grad in expected.items():
        torch.testing.assert_close(analog.get_parameter(name).grad, grad, **TOL)


def test_noisy_training_reaches_every_projection_weight_and_range():
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(encoder_layer(batch_first=True), num_layers=2)
    analog = at.convert(encoder, QUANTISED.replace(prog_noise_std=0.05)).train()
    analog(torch.randn(N, L, E)).square().mean().backward()
    for name, layer in analog_layers(analog).items():
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name


def test_dropout_is_drawn_in_training_and_off_in_eval():
    digital = make_attention(dropout=0.5, batch_first=True)
    analog = at.convert(nn.Sequential(digital), IDEAL)[0]
    q, k, v = qkv(True)
    analog.train()
    assert not torch.equal(analog(q, k, v)[1], analog(q, k, v)[1])
    analog.eval()
    digital.eval()
    torch.testing.assert_close(analog(q, k, v)[0], digital(q, k, v)[0], **TOL)


# -- back to torch -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [{}, {"kdim": 12, "vdim": 10, "bias": False}, {"add_bias_kv": True}]
)
def test_to_digital_of_an_ideal_conversion_gives_the_original_outputs(options):
    original = make_attention(**options).eval()
    digital = at.convert(nn.Sequential(original), IDEAL)[0].to_digital()
    assert type(digital) is nn.MultiheadAttention
    q, k, v = qkv(False, options.get("kdim", E), options.get("vdim", E))
    for got, expected in zip(digital(q, k, v), original(q, k, v), strict=True):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_to_digital_packs_the_weights_each_projection_holds():
    analog = at.convert(nn.Sequential(make_attention()), QUANTISED)[0]
    digital = analog.to_digital()
    held = [held_weights(getattr(analog, p).weight.detach(), QUANTISED) for p in PROJECTIONS]
    torch.testing.assert_close(digital.in_proj_weight, torch.cat(held[:3]))
    torch.testing.assert_close(digital.out_proj.weight, held[3])
    torch.testing.assert_close(digital.in_proj_bias[:E], analog.q_proj.bias)


def test_unconvert_of_a_transformer_encoder_gives_torch_layers_back():
    torch.manual_seed(0)
    original = nn.TransformerEncoder(encoder_layer(batch_first=True), num_layers=2).eval()
    restored = at.nn.unconvert(at.convert(original, IDEAL))
    assert type(restored.layers[0].self_attn) is nn.MultiheadAttention
    assert not analog_layers(restored)
    x = torch.randn(N, L, E)
    torch.testing.assert_close(restored(x), original(x), atol=0, rtol=0)


# -- hardware: chips and energy ------------------------------------------------------------


def test_chips_program_the_projections_of_a_transformer_encoder():
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(encoder_layer(batch_first=True), num_layers=2)
    analog = at.convert(encoder, PCM).eval()
    x = torch.randn(N, L, E)
    outputs = []
    for seed in (0, 0, 1):
        chip = at.Chip(PCM, seed=seed)
        with chip.deploy(analog, time_s=60.0):
            outputs.append(analog(x))
        assert "layers.1.self_attn.v_proj" in chip._programmed
    torch.testing.assert_close(outputs[0], outputs[1])  # same chip, same time
    assert not torch.allclose(outputs[0], outputs[2])  # another chip


def test_energy_estimate_costs_every_projection_of_a_transformer_encoder():
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(encoder_layer(batch_first=True), num_layers=2)
    report = at.energy.estimate(at.convert(encoder, PCM), input_shape=(L, E))
    costs = {cost.name: cost for cost in report.layers}
    for i in range(2):
        for p in PROJECTIONS:
            cost = costs[f"layers.{i}.self_attn.{p}"]
            assert cost.kind == "analog"
            assert cost.macs == L * E * E  # one sequence: L products of an E x E crossbar
        products = costs[f"layers.{i}.self_attn.products"]
        assert products.kind == "attention"
        assert products.macs == 2 * L * L * E  # Q K^T and A V, counted by hand
        # 8-bit MACs plus 3 softmax ops per score on the digital unit
        c = PCM.energy
        expected = 2 * L * L * E * c.digital_mac_j + 3 * L * L * HEADS * c.digital_op_j
        assert products.total_energy_j == pytest.approx(expected)
    assert report.energy_j > 0


def test_a_digital_attention_is_not_silently_left_out_of_the_energy():
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(encoder_layer(batch_first=True), num_layers=1)
    partly = at.convert(encoder, {"*.self_attn": None, "*": PCM})
    with pytest.raises(ValueError, match="in-projection is not costed"):
        at.energy.estimate(partly, input_shape=(L, E))


# -- the example ---------------------------------------------------------------------------


def test_the_sequence_task_example_runs_end_to_end(tmp_path: Path):
    path = Path(__file__).parents[1] / "experiments" / "transformer" / "sequence_task.py"
    spec = importlib.util.spec_from_file_location("sequence_task", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summary = example.main(
        [
            "--out",
            str(tmp_path),
            "--train-size",
            "64",
            "--test-size",
            "32",
            "--epochs",
            "1",
            "--chips",
            "2",
            "--d-model",
            "16",
            "--layers",
            "1",
        ]
    )
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary
    assert 0.0 <= saved["analog"]["chip_accuracy_mean"] <= 1.0
    assert saved["energy"]["analog_j_per_sequence"] > 0
    assert (tmp_path / "results.md").is_file()
