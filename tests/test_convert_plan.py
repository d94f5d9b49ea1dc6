"""Per-layer hardware plans, describe, unconvert, profile fingerprints and autocast."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.nn import ProfileMismatchWarning, plan_from_config

PCM = at.HardwareProfile.preset("pcm")
RRAM = at.HardwareProfile.preset("rram")
FOUR_BIT = at.HardwareProfile.preset("seed-4bit-10pct")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Sequential(nn.Linear(4 * 6 * 6, 16), nn.ReLU()),
        nn.Linear(16, 3),
    )


def _profiles(model: nn.Module) -> dict[str, str]:
    return {name: layer.profile.name for name, layer in at.nn.analog_layers(model).items()}


def test_rules_by_pattern_and_type_first_match_wins_default_last():
    converted = at.convert(_model(), {"0": None, "3.*": RRAM, nn.Linear: PCM, "*": FOUR_BIT})
    assert type(converted[0]) is nn.Conv2d  # None: stays digital
    assert _profiles(converted) == {"3.0": "rram", "4": "pcm"}


def test_a_single_profile_and_an_all_star_rule_agree():
    x = torch.rand(2, 1, 8, 8)
    one = at.convert(_model(), FOUR_BIT).eval()
    rules = at.convert(_model(), {"*": FOUR_BIT}).eval()
    assert torch.equal(one(x), rules(x))


def test_layers_no_rule_matches_stay_digital():
    converted = at.convert(_model(), {nn.Conv2d: PCM})
    assert _profiles(converted) == {"0": "pcm"}
    assert type(converted[4]) is nn.Linear


def test_a_rule_that_matches_nothing_is_an_error_naming_it_and_the_layers():
    with pytest.raises(ValueError, match=r"'head\.\*'.*'3\.0'"):
        at.convert(_model(), {"head.*": PCM, "*": RRAM})
    with pytest.raises(ValueError, match=r"nn\.LSTM"):
        at.convert(_model(), {nn.LSTM: PCM})


def test_bad_rule_keys_and_values_are_type_errors():
    with pytest.raises(TypeError, match="not a HardwareProfile"):
        at.convert(_model(), {"*": "pcm"})
    with pytest.raises(TypeError, match="rule key 3"):
        at.convert(_model(), {3: PCM})
    with pytest.raises(TypeError, match="HardwareProfile or a mapping"):
        at.convert(_model(), ["pcm"])


def test_skip_still_keeps_named_layers_digital_under_rules():
    converted = at.convert(_model(), {"*": PCM}, skip=["4"])
    assert set(_profiles(converted)) == {"0", "3.0"}


def test_plan_from_config_reads_presets_null_changes_and_layer_types():
    rules = plan_from_config(
        {"0": None, "nn.Linear": "pcm", "*": {"preset": "rram", "weight_bits": 6}}
    )
    assert list(rules) == ["0", nn.Linear, "*"]
    assert rules["0"] is None and rules[nn.Linear] == PCM
    assert rules["*"] == RRAM.replace(weight_bits=6)
    with pytest.raises(ValueError, match=r"nn\.Lineer"):
        plan_from_config({"nn.Lineer": "pcm"})
    with pytest.raises(ValueError, match=r"layers\.\*"):
        plan_from_config({"*": 4})


def test_describe_lists_every_weight_layer_with_profile_tiles_and_bits():
    converted = at.convert(_model(), {"0": None, "*": FOUR_BIT.replace(tile_rows=64)})
    lines = at.describe(converted).splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "profile"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["0"][1:3] == ["Conv2d", "digital"]
    # 144 inputs on 64-row tiles: 3 balanced tiles of 48 rows
    assert rows["3.0"][1:] == ["AnalogLinear", "seed-4bit-10pct", "2304", "3", "x", "48", "4/8/8"]


def test_describe_shows_weight_grid_and_rounding_only_when_not_the_defaults():
    assert "grid/rounding" not in at.describe(at.convert(_model(), FOUR_BIT))
    affine = FOUR_BIT.replace(weight_quant="affine", weight_rounding="stochastic")
    lines = at.describe(at.convert(_model(), {"0": None, "3.0": affine, "*": FOUR_BIT}))
    header, _, *body = lines.splitlines()
    assert header.split()[-1] == "grid/rounding"
    grids = {line.split()[0]: line.split()[-1] for line in body}
    assert grids["0"] == "-"  # digital
    assert grids["3.0"] == "affine/stochastic"
    assert grids["4"] == "symmetric/nearest"


def test_unconvert_returns_torch_layers_holding_the_programmed_weight_grid():
    digital = _model()
    analog = at.convert(digital, FOUR_BIT)
    plain = at.unconvert(analog)
    assert type(plain[0]) is nn.Conv2d and type(plain[3][0]) is nn.Linear
    assert plain.state_dict().keys() == digital.state_dict().keys()
    # independent reference: per-row scale s = max|W|, 4-bit grid of step 1/7, s * round(7 W/s)/7
    w = digital[4].weight.detach()
    s = w.abs().amax(dim=1, keepdim=True)
    expected = s * torch.round(w / s * 7) / 7
    assert torch.allclose(plain[4].weight, expected, atol=1e-7)
    assert torch.equal(plain[4].bias, digital[4].bias)
    assert torch.equal(analog[4].weight, digital[4].weight)  # the analog model is unchanged


def test_unconvert_of_an_ideal_model_gives_back_the_digital_outputs():
    digital = _model().eval()
    x = torch.rand(3, 1, 8, 8)
    plain = at.unconvert(at.convert(digital, at.HardwareProfile.preset("ideal")))
    assert torch.equal(plain(x), digital(x))
    single = at.unconvert(at.convert(nn.Linear(4, 2), PCM))
    assert type(single) is nn.Linear


def test_loading_weights_saved_under_another_profile_warns():
    pcm_model = at.convert(_model(), PCM)
    state = pcm_model.state_dict()
    with pytest.warns(ProfileMismatchWarning, match="'rram'"):
        at.convert(_model(), RRAM).load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        at.convert(_model(), PCM).load_state_dict(state)  # same hardware: silent
        at.convert(_model(), RRAM).load_state_dict(_model().state_dict())  # digital weights
        old = {k: v for k, v in state.items() if not k.endswith("_extra_state")}
        at.convert(_model(), RRAM).load_state_dict(old)  # saved before fingerprints


def test_the_fingerprint_changes_with_any_field():
    assert PCM.fingerprint == at.HardwareProfile.preset("pcm").fingerprint
    assert PCM.fingerprint != PCM.replace(read_noise_std=PCM.read_noise_std + 1e-6).fingerprint


def test_analog_layers_under_bf16_autocast_compute_in_float32():
    model = at.convert(_model(), FOUR_BIT).eval()
    x = torch.rand(4, 1, 8, 8)
    reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, reference)


def test_a_digital_bf16_layer_can_feed_an_analog_layer_under_autocast_and_train():
    model = at.convert(_model(), FOUR_BIT, skip=["0"])  # digital conv: bf16 under autocast
    x = torch.rand(4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model[2](model[1](model[0](x)))
        assert hidden.dtype == torch.bfloat16
        out = model(x)
        loss = out.float().square().mean()
    loss.backward()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.isfinite(model[3][0].weight.grad).all()
    model.eval()
    with torch.no_grad():
        expected = model[4](model[3](hidden.float()))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model[4](model[3](hidden)), expected)


def test_without_autocast_a_wrong_input_dtype_is_still_refused():
    model = at.convert(_model(), FOUR_BIT)
    with pytest.raises(TypeError, match="dtype"):
        model(torch.rand(2, 1, 8, 8, dtype=torch.float64))


def _mixed() -> nn.Module:
    return at.convert(_model(), {nn.Conv2d: RRAM, "*": FOUR_BIT}).eval()


def test_a_one_profile_chip_refuses_a_model_with_per_layer_hardware():
    chip = at.Chip(PCM, seed=0)
    with (
        pytest.raises(ValueError, match=r"2 different profiles \(rram, seed-4bit-10pct\)"),
        chip.deploy(_mixed()),
    ):
        pass


def test_a_chip_for_the_model_reads_every_layer_at_its_own_profile():
    model = _mixed()
    with at.Chip.for_model(model, seed=3).deploy(model):
        read = {n: layer.chip_read.profile for n, layer in at.nn.analog_layers(model).items()}
    assert read == {"0": RRAM, "3.0": FOUR_BIT, "4": FOUR_BIT}
    x = torch.rand(5, 1, 8, 8)
    by_hand = at.Chip(PCM, seed=3, layer_profiles={"0": RRAM, "3.0": FOUR_BIT, "4": FOUR_BIT})
    with torch.no_grad():
        with at.Chip.for_model(model, seed=3).deploy(model, 60.0):
            ours = model(x)
        with by_hand.deploy(model, 60.0):
            assert torch.equal(model(x), ours)


def test_evaluate_reads_per_layer_hardware_unless_told_one_profile(monkeypatch):
    model = _mixed()
    loader = [(torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,)))]
    deploy = at.Chip.deploy
    seen: list[dict[str, str]] = []

    @contextmanager
    def recording(chip, net, time_s=0.0):
        with deploy(chip, net, time_s) as deployed:
            layers = at.nn.analog_layers(net).items()
            seen.append({n: layer.chip_read.profile.name for n, layer in layers})
            yield deployed

    monkeypatch.setattr(at.Chip, "deploy", recording)
    at.evaluate(model, loader, n_chips=2)
    own = {"0": "rram", "3.0": "seed-4bit-10pct", "4": "seed-4bit-10pct"}
    assert seen == [own, own]
    seen.clear()
    at.evaluate(model, loader, n_chips=1, profile=PCM)
    assert seen == [dict.fromkeys(own, "pcm")]


def test_a_per_layer_chip_is_not_exported_as_one_profile(tmp_path):
    model = _mixed()
    with pytest.raises(ValueError, match="different profiles"):
        at.Chip.for_model(model, seed=0).export(model, tmp_path / "set")
    uniform = at.convert(_model(), FOUR_BIT)
    at.Chip.for_model(uniform, seed=0).export(uniform, tmp_path / "ok")
    assert (tmp_path / "ok" / "manifest.json").is_file()


def test_the_refusal_names_the_fields_that_tell_same_named_profiles_apart():
    model = at.convert(_model(), {"4": FOUR_BIT.replace(adc_bits=6), "*": FOUR_BIT})
    chip = at.Chip(FOUR_BIT, seed=0)
    with (
        pytest.raises(ValueError, match=r"seed-4bit-10pct; differing in adc_bits\)"),
        chip.deploy(model),
    ):
        pass
