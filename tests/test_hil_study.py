"""The HIL study's config checks and its summary (mean ± std over cells)."""

from __future__ import annotations

import json

import pytest
import yaml

from analogtorch.hil.study import _summarise, load_study


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


def test_summary_reports_mean_and_sample_std_over_cells(tmp_path):
    config = load_study_config(tmp_path)
    cells = [
        {
            "seed": 0,
            "chip": c,
            "surrogate_ideal_accuracy": 0.95,
            "accuracy": {"surrogate-only": a, "HIL": a + 0.02, "calibrated surrogate": a + 0.01},
            "backend_calls": {"HIL": 1000, "calibrated surrogate": 100},
        }
        for c, a in enumerate((0.90, 0.92))
    ]
    markdown = _summarise(config, cells, tmp_path)
    record = json.loads((tmp_path / "summary.json").read_text())
    mean, std = record["summary"]["HIL"]
    assert mean == pytest.approx(93.0)
    assert std == pytest.approx((2 * 1.0**2) ** 0.5)  # sample std of 92, 94
    assert "| HIL | 93.00 ± 1.41 | 1000 |" in markdown
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def load_study_config(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t"}))
    return load_study(path)
