"""`analogtorch energy`: model targets, study configs, and one-line errors."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from analogtorch.cli import app

runner = CliRunner()
TERMINAL = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}


def test_energy_of_a_named_model_prints_a_table_and_writes_json_and_plot(tmp_path):
    result = runner.invoke(
        app, ["energy", "demo-mlp", "--profile", "rram", "--out", str(tmp_path)], env=TERMINAL
    )
    assert result.exit_code == 0, result.output
    assert "total (analog)" in result.output and "asic-int8" in result.output
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["profile"] == "rram"
    assert record["total"]["macs"] == 64 * 128 + 128 * 128 + 128 * 10
    assert (tmp_path / "energy.png").stat().st_size > 0


def test_energy_json_flag_prints_only_the_record(tmp_path):
    result = runner.invoke(
        app,
        ["energy", "demo-mlp", "--json", "--baseline", "gpu-a100", "--out", str(tmp_path)],
        env=TERMINAL,
    )
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.output)["baselines"]) == ["gpu-a100"]


def test_energy_design_point_config_reports_ratios_to_the_published_figures(tmp_path):
    config = {
        "name": "tiny-point",
        "kind": "design-point",
        "citation": "a test chip",
        "profile": "pcm",
        "profile_changes": {"tile_rows": 64, "tile_cols": 64},
        "array": [64, 64],
        "cores": 2,
        "reported": {"tops": 1.0, "tops_per_watt": 10.0},
        "sensitivity": {"v_read_volts": [0.1]},
    }
    path = tmp_path / "point.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = runner.invoke(app, ["energy", str(path), "--out", str(out)], env=TERMINAL)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "summary.json").read_text())
    uniform = record["predicted"][0]
    # 2 cores x 2·64·64 ops per (128 ns PWM read + 5 ns ADC latch of the pcm preset)
    assert uniform["tops"] == pytest.approx(2 * 2 * 64 * 64 / 133e-9 / 1e12, rel=1e-12)
    assert uniform["tops_per_watt_ratio"] == uniform["tops_per_watt"] / 10.0
    assert len(record["sensitivity"]) == 2  # one value x two input scenarios
    assert (out / "report.md").read_text().startswith("# tiny-point")


def test_energy_rejects_unknown_models_and_bad_configs(tmp_path):
    result = runner.invoke(app, ["energy", "no-such-net"], env=TERMINAL)
    assert result.exit_code != 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "kind": "nonsense", "profile": "pcm"}))
    result = runner.invoke(app, ["energy", str(bad)], env=TERMINAL)
    assert result.exit_code != 0
    assert "kind" in str(result.exception)
