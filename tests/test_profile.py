"""`HardwareProfile`: presets, YAML round trips, validated copies and precise error messages.

Every invalid value must raise :class:`analogtorch.ProfileError` (a ``ValueError``) whose
message names the field, the value given and what is allowed.
"""

from __future__ import annotations

import math
import re

import pytest

import analogtorch as at
from analogtorch.hardware import preset_names
from analogtorch.hardware.energy_constants import EnergyConstants

SHIPPED_PRESETS = ["ideal", "pcm", "rram", "sram-cim", "seed-4bit-10pct"]
NOISE_STD_FIELDS = ("prog_noise_std", "read_noise_std", "output_noise_std")


def test_profile_error_is_a_value_error():
    assert issubclass(at.ProfileError, ValueError)


def test_preset_names_lists_every_shipped_preset():
    assert set(SHIPPED_PRESETS) <= set(preset_names())
    assert preset_names() == sorted(preset_names())


@pytest.mark.parametrize("name", SHIPPED_PRESETS)
def test_every_preset_loads_and_is_named_after_its_file(name):
    profile = at.HardwareProfile.preset(name)
    assert isinstance(profile, at.HardwareProfile)
    assert profile.name == name


def test_ideal_preset_is_ideal_and_the_others_are_not():
    assert at.HardwareProfile.preset("ideal").is_ideal
    for name in ("pcm", "rram", "sram-cim", "seed-4bit-10pct"):
        assert not at.HardwareProfile.preset(name).is_ideal


@pytest.mark.parametrize("name", SHIPPED_PRESETS)
def test_preset_round_trips_through_yaml_unchanged(name, tmp_path):
    profile = at.HardwareProfile.preset(name)
    path = tmp_path / f"{name}.yaml"
    text = profile.to_yaml(path)
    assert path.read_text() == text
    loaded = at.HardwareProfile.from_yaml(path)
    assert loaded == profile
    assert loaded.model_dump() == profile.model_dump()
    # Serialising again gives the same text: the round trip is a fixed point.
    assert loaded.to_yaml() == text


def test_pcm_preset_values_survive_the_round_trip_exactly(tmp_path):
    profile = at.HardwareProfile.preset("pcm")
    path = tmp_path / "pcm.yaml"
    profile.to_yaml(path)
    loaded = at.HardwareProfile.from_yaml(path)
    assert loaded.prog_noise_poly == (0.0105392, 0.0786, -0.046924)
    assert loaded.g_max_siemens == 25.0e-6
    assert loaded.t_read_seconds == 128e-9
    assert loaded.energy.input_encoding == "pwm"
    assert loaded.drift_compensation is True


@pytest.mark.parametrize("name", SHIPPED_PRESETS)
def test_replace_returns_a_changed_copy_and_leaves_the_original(name):
    profile = at.HardwareProfile.preset(name)
    copy = profile.replace(adc_bits=5, read_noise_std=0.03)
    assert isinstance(copy, at.HardwareProfile)
    assert (copy.adc_bits, copy.read_noise_std) == (5, 0.03)
    unchanged = {
        k: v for k, v in copy.model_dump().items() if k not in ("adc_bits", "read_noise_std")
    }
    assert unchanged == {
        k: v for k, v in profile.model_dump().items() if k not in ("adc_bits", "read_noise_std")
    }
    assert profile == at.HardwareProfile.preset(name)


def test_replace_validates_the_new_values():
    profile = at.HardwareProfile.preset("pcm")
    with pytest.raises(at.ProfileError, match="read_noise_std"):
        profile.replace(read_noise_std=-0.2)
    with pytest.raises(at.ProfileError, match="transfer_nonlinearity"):
        profile.replace(transfer_curve="tanh")


def test_replace_rejects_unknown_field_names():
    profile = at.HardwareProfile.preset("ideal")
    with pytest.raises(at.ProfileError, match="adc_bitz") as info:
        profile.replace(adc_bitz=8)
    assert "adc_bits" in str(info.value)  # the known fields are listed


def test_profile_is_immutable():
    profile = at.HardwareProfile.preset("ideal")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        profile.adc_bits = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field", "value", "allowed"),
    [
        ({"prog_noise_std": -0.1}, "prog_noise_std", "-0.1", r"greater than or equal to 0|>= ?0"),
        ({"read_noise_std": -1}, "read_noise_std", "-1", r"greater than or equal to 0|>= ?0"),
        (
            {"output_noise_std": -0.5},
            "output_noise_std",
            "-0.5",
            r"greater than or equal to 0|>= ?0",
        ),
        ({"dac_bits": 0}, "dac_bits", "0", r"greater than or equal to 1|>= ?1|\[1, 16\]"),
        ({"adc_bits": 17}, "adc_bits", "17", r"less than or equal to 16|<= ?16|\[1, 16\]"),
        ({"weight_bits": 1}, "weight_bits", "1", r"greater than or equal to 2|>= ?2|\[2, 16\]"),
        ({"weight_bits": 17}, "weight_bits", "17", r"less than or equal to 16|<= ?16|\[2, 16\]"),
        ({"tile_rows": 0}, "tile_rows", "0", r"greater than or equal to 1|>= ?1|positive"),
        ({"tile_cols": -3}, "tile_cols", "-3", r"greater than or equal to 1|>= ?1|positive"),
        (
            {"transfer_curve": "sinh", "transfer_nonlinearity": 0},
            "transfer_nonlinearity",
            "0",
            r"positive nonlinearity|transfer_curve='linear'",
        ),
    ],
)
def test_invalid_value_raises_profile_error_naming_field_value_and_allowed(
    changes, field, value, allowed
):
    with pytest.raises(at.ProfileError) as info:
        at.HardwareProfile(**changes)
    message = str(info.value)
    assert field in message
    assert re.search(rf"{re.escape(field)}={re.escape(value)}\b", message), message
    assert re.search(allowed, message), message


@pytest.mark.parametrize("value", [1, 17])
def test_weight_bits_message_states_the_range_two_to_sixteen(value):
    with pytest.raises(at.ProfileError) as info:
        at.HardwareProfile(weight_bits=value)
    bound = "2" if value < 2 else "16"
    assert re.search(rf"(equal to|>=|<=) ?{bound}\b|\[2, 16\]", str(info.value))


def test_bits_at_the_edges_of_the_allowed_range_are_accepted():
    profile = at.HardwareProfile(dac_bits=1, adc_bits=16, weight_bits=2)
    assert (profile.dac_bits, profile.adc_bits, profile.weight_bits) == (1, 16, 2)
    assert at.HardwareProfile(weight_bits=16).weight_bits == 16


def test_unknown_preset_name_lists_the_available_presets():
    with pytest.raises(at.ProfileError) as info:
        at.HardwareProfile.preset("flash")
    message = str(info.value)
    assert "'flash'" in message
    for name in SHIPPED_PRESETS:
        assert name in message


def test_unknown_yaml_key_is_an_error_naming_the_key_and_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\nadc_bitz: 8\n")
    with pytest.raises(at.ProfileError) as info:
        at.HardwareProfile.from_yaml(path)
    message = str(info.value)
    assert "adc_bitz" in message
    assert str(path) in message
    assert "adc_bits" in message  # the known fields are listed


def test_invalid_yaml_value_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "negative.yaml"
    path.write_text("read_noise_std: -0.5\n")
    with pytest.raises(at.ProfileError) as info:
        at.HardwareProfile.from_yaml(path)
    assert str(path) in str(info.value)
    assert "read_noise_std=-0.5" in str(info.value)


def test_unsafe_yaml_tag_is_rejected_without_running_anything(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f'name: !!python/object/apply:os.system ["echo hi > {marker}"]\nread_noise_std: 0.01\n'
    )
    with pytest.raises(at.ProfileError):
        at.HardwareProfile.from_yaml(path)
    assert not marker.exists()


def test_unsafe_yaml_tag_at_top_level_is_rejected(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.yaml"
    path.write_text(f'!!python/object/apply:os.system ["echo hi > {marker}"]\n')
    with pytest.raises(at.ProfileError):
        at.HardwareProfile.from_yaml(path)
    assert not marker.exists()


@pytest.mark.parametrize("text", ["- adc_bits: 8\n- dac_bits: 8\n", "just a string\n", ""])
def test_yaml_that_is_not_a_mapping_is_rejected(text, tmp_path):
    path = tmp_path / "not_a_mapping.yaml"
    path.write_text(text)
    with pytest.raises(at.ProfileError, match="mapping"):
        at.HardwareProfile.from_yaml(path)


def test_scale_noise_doubles_every_noise_std_and_quadruples_shot_noise():
    base = at.HardwareProfile.preset("pcm").replace(
        prog_noise_std=0.02, output_noise_std=0.04, shot_noise_coeff=0.003
    )
    doubled = base.scale_noise(2.0)
    for field in NOISE_STD_FIELDS:
        assert getattr(doubled, field) == pytest.approx(2.0 * getattr(base, field), rel=1e-12)
    assert doubled.prog_noise_poly == pytest.approx(
        tuple(2.0 * c for c in base.prog_noise_poly), rel=1e-12
    )
    assert doubled.shot_noise_coeff == pytest.approx(4.0 * base.shot_noise_coeff, rel=1e-12)
    # Nothing that is not a noise amplitude changes.
    noise_fields = {*NOISE_STD_FIELDS, "prog_noise_poly", "shot_noise_coeff"}
    doubled_fields = doubled.model_dump()
    for field, value in base.model_dump().items():
        if field not in noise_fields:
            assert doubled_fields[field] == value, field


def test_scale_noise_zero_removes_all_noise():
    silent = at.HardwareProfile.preset("rram").scale_noise(0.0)
    assert not silent.has_noise


@pytest.mark.parametrize("factor", [-1.0, -1e-9])
def test_scale_noise_rejects_a_negative_factor(factor):
    with pytest.raises(at.ProfileError, match=re.escape(str(factor))):
        at.HardwareProfile.preset("pcm").scale_noise(factor)


def _float_fields(model) -> list[str]:
    return [
        name
        for name, field in model.model_fields.items()
        if field.annotation in (float, float | None)
    ]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("field", _float_fields(at.HardwareProfile))
def test_every_float_field_of_a_profile_rejects_non_finite_values(field, value):
    with pytest.raises(at.ProfileError, match=f"{field}="):
        at.HardwareProfile(**{field: value})


@pytest.mark.parametrize("value", [math.inf, math.nan])
@pytest.mark.parametrize("field", _float_fields(EnergyConstants))
def test_every_energy_constant_rejects_non_finite_values(field, value):
    with pytest.raises(at.ProfileError, match=f"energy.{field}="):
        at.HardwareProfile(energy={field: value})


@pytest.mark.parametrize("field", _float_fields(at.HardwareProfile))
def test_every_float_field_of_a_profile_has_a_finite_upper_bound(field):
    with pytest.raises(at.ProfileError, match=f"{field}="):
        at.HardwareProfile(**{field: 1e300})


@pytest.mark.parametrize(
    "coeffs",
    [(-0.01,), (0.02, -0.1, 0.05), (0.01, -0.02), (0.0, 0.0, -1e-3), (math.inf, 0.1), (math.nan,)],
)
def test_a_programming_noise_polynomial_negative_or_not_finite_on_0_1_is_rejected(coeffs):
    with pytest.raises(at.ProfileError, match="prog_noise_poly"):
        at.HardwareProfile(prog_noise_poly=coeffs)


@pytest.mark.parametrize("coeffs", [(0.02, -0.1, 0.125), (0.0, 0.1), (0.01, 0.05, -0.05)])
def test_a_programming_noise_polynomial_non_negative_on_0_1_is_accepted(coeffs):
    # (0.02, -0.1, 0.125) touches zero at g = 0.4; (0.01, 0.05, -0.05) is 0.01 at g = 1.
    assert at.HardwareProfile(prog_noise_poly=coeffs).prog_noise_poly == coeffs
