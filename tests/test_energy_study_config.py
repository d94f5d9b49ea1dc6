"""Energy study configs are checked key by key, names resolved, before anything runs."""

from __future__ import annotations

import re

import pytest
import yaml

from analogtorch.config_files import shipped_configs
from analogtorch.energy.studies import load_config

_POINT = {
    "kind": "design-point",
    "profile": "pcm",
    "citation": "a paper",
    "array": [256, 256],
    "cores": 64,
    "reported": {"tops": 63.1, "tops_per_watt": 9.76},
}


def _load(tmp_path, data):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_every_shipped_energy_config_loads_with_its_defaults():
    energy = {p.stem: p for p in shipped_configs().values() if p.parent.name == "energy"}
    assert {"networks", "scaling", "hermes-2023"} <= set(energy)
    for path in energy.values():
        config = load_config(path)
        assert config["name"] == path.stem and "profile_changes" in config


def test_defaults_fill_in_and_the_file_name_is_the_default_name(tmp_path):
    config = _load(tmp_path, {"kind": "scaling", "profile": "rram"})
    assert config["name"] == "study"
    assert config["options"] == {
        "size": 512,
        "units": 1024,
        "settling_s": 1e-6,
        "bits_per_device": 2,
        "seed": 0,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "energy", "profile": "pcm"}, "kind='energy'"),
        ({"kind": "networks", "profile": "pcm"}, "models: missing"),
        (
            {"kind": "networks", "profile": "pcm", "models": ["resnet99"]},
            "unknown model 'resnet99'",
        ),
        (
            {"kind": "networks", "profile": "pcm", "models": ["demo-mlp"], "baselines": ["tpu"]},
            "unknown baseline 'tpu'",
        ),
        ({**_POINT, "array": [256, 0]}, "array.1=0"),
        ({**_POINT, "reported": {"tops": float("inf"), "tops_per_watt": 1.0}}, "reported.tops=inf"),
        ({**_POINT, "sensitivity": {"energy.nope": [1.0]}}, "sensitivity energy.nope"),
        ({**_POINT, "sensitivity": {"adc_bits": [40]}}, "adc_bits=40"),
        ({**_POINT, "arrays": [1, 1]}, "arrays=[1, 1]: unknown key"),
        ({"kind": "scaling", "profile": "pcm", "options": {"size": 0}}, "options.size=0"),
        ({"kind": "scaling", "profile": "pcmx"}, "unknown preset 'pcmx'"),
        ({"kind": "scaling", "profile": "pcm", "profile_changes": {"adc_bits": 99}}, "adc_bits=99"),
    ],
)
def test_each_bad_energy_config_is_one_error_naming_the_key(tmp_path, data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _load(tmp_path, data)


def test_the_scaling_sweep_covers_each_knob_and_plots(tmp_path):
    from analogtorch.energy.scaling import plot_sweep, sweep
    from analogtorch.hardware.profile import HardwareProfile

    rows = sweep(HardwareProfile.preset("pcm"), size=32, units=16)
    knobs = [r["knob"] for r in rows]
    assert [knobs.count(k) for k in ("adc_bits", "weight_bits", "array_size", "density")] == [
        11,
        7,
        6,
        5,
    ]
    adc = [r["energy_per_mac_j"] for r in rows if r["knob"] == "adc_bits"]
    assert adc[-1] > adc[0] > 0  # a 12-bit ADC costs more per MAC than a 2-bit one
    path = plot_sweep(rows, tmp_path / "scaling.png", "scaling of a long study name " * 4)
    assert path.stat().st_size > 0  # the figure audit (conftest) checks its labels and title
