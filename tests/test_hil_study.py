"""The HIL study's config checks and its summary (mean ± std over cells)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from analogtorch.hil.study import _summarise
from analogtorch.hil.study_config import load_config as load_study


def test_study_config_fills_defaults_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "steps": 7}))
    config = load_study(path)
    assert config["steps"] == 7 and config["profile"] == "pcm"
    path.write_text(yaml.safe_dump({"name": "s", "stepz": 7}))
    with pytest.raises(ValueError, match="stepz"):
        load_study(path)
    with pytest.raises(FileNotFoundError):
        load_study(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"steps": 0}, "steps=0"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"hidden": [256, 0]}, "hidden.1=0"),
        ({"chips": []}, "chips=[]"),
        ({"budget": -5}, "budget=-5"),
        ({"profile": "pcmx"}, "pcmx"),
        ({"kind": "robustness"}, "kind='robustness'"),
    ],
)
def test_each_bad_value_of_a_hil_config_names_its_key(tmp_path, changes, key):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", **changes}))
    with pytest.raises(ValueError, match=re.escape(key)):
        load_study(path)


def test_a_spice_check_config_is_checked_before_any_circuit_runs(tmp_path):
    path = tmp_path / "wires.yaml"
    path.write_text(yaml.safe_dump({"kind": "spice-check"}))
    config = load_study(path)
    assert config["name"] == "wires" and config["tile"] == 32 and config["epochs"] == 300
    path.write_text(yaml.safe_dump({"kind": "spice-check", "wire_resistance_ohm": [1.0, -2.0]}))
    with pytest.raises(ValueError, match=re.escape("wire_resistance_ohm.1=-2.0")):
        load_study(path)
    path.write_text(yaml.safe_dump({"kind": "spice-check", "dataset": "mnist"}))
    with pytest.raises(ValueError, match="dataset='mnist': unknown key"):
        load_study(path)


def test_summary_reports_mean_and_sample_std_over_cells(tmp_path):
    config = load_study_config(tmp_path)
    cells = [
        {
            "seed": 0,
            "chip": c,
            "surrogate_ideal_accuracy": 0.95,
            "accuracy": {"surrogate-only": a, "HIL": a + 0.02, "I/O twin": a + 0.01},
            "backend_calls": {"HIL": 1000, "I/O twin": 100},
        }
        for c, a in enumerate((0.90, 0.92))
    ]
    markdown = _summarise(config, cells, tmp_path)
    record = json.loads((tmp_path / "summary.json").read_text())
    mean, std = record["summary"]["HIL"]
    assert mean == pytest.approx(93.0)
    assert std == pytest.approx((2 * 1.0**2) ** 0.5)  # sample std of 92, 94
    assert "| HIL | 93.00 ± 1.41 | 1000 | 0 |" in markdown
    assert "calibrated physical surrogate" not in markdown  # no calibrate section, no arm
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def load_study_config(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t"}))
    return load_study(path)
