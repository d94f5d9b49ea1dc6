"""`run_demo` on a reduced configuration: files written, models reported, reproducible."""

from __future__ import annotations

import csv
import json

import pytest

from analogtorch.demo import MODEL_NAMES, DemoConfig, run_demo
from analogtorch.train import EvalRow

SMALL = DemoConfig(
    n_chips=2,
    noise_scales=(0.0, 1.0),
    times_s=(1.0, 3600.0),
    digital_epochs=5,
    finetune_epochs=2,
    hidden=32,
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    return out_dir, run_demo(out_dir, SMALL, show_progress=False)


def test_demo_reports_every_model_on_every_setting(demo_run):
    _, report = demo_run
    assert [(r.model, r.setting) for r in report.select(setting="fp32")] == [("digital", "fp32")]
    for name in MODEL_NAMES:
        assert len(report.select(model=name, setting="ideal")) == 1
        chip_rows = report.select(model=name, setting="chip")
        assert {(r.noise_scale, r.time_s) for r in chip_rows} == {
            (s, t) for s in SMALL.noise_scales for t in SMALL.times_s
        }
        assert all(r.n_chips == SMALL.n_chips for r in chip_rows)
    assert len(report.rows) == 1 + len(MODEL_NAMES) * (
        1 + len(SMALL.noise_scales) * len(SMALL.times_s)
    )
    for row in report.rows:
        assert 0.0 <= row.accuracy_mean <= 1.0
    # five epochs on digits are far better than chance (10 %)
    assert report.select(setting="fp32")[0].accuracy_mean > 0.5


def test_demo_writes_a_json_record(demo_run):
    out_dir, report = demo_run
    record = json.loads((out_dir / "summary.json").read_text())
    assert record["config"]["n_chips"] == SMALL.n_chips
    assert record["config"]["seed"] == SMALL.seed
    assert record["profile"]["name"] == SMALL.profile.name
    assert [EvalRow(**row) for row in record["rows"]] == report.rows


def test_demo_writes_a_csv_matching_the_report(demo_run):
    out_dir, report = demo_run
    with (out_dir / "results.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(EvalRow.__dataclass_fields__)
        rows = list(reader)
    assert len(rows) == len(report.rows)
    for written, row in zip(rows, report.rows, strict=True):
        assert written["model"] == row.model
        assert written["setting"] == row.setting
        assert float(written["noise_scale"]) == row.noise_scale
        assert float(written["time_s"]) == row.time_s
        assert float(written["accuracy_mean"]) == row.accuracy_mean
        assert float(written["accuracy_std"]) == row.accuracy_std
        assert int(written["n_chips"]) == row.n_chips


def test_demo_writes_a_png_plot(demo_run):
    out_dir, _ = demo_run
    data = (out_dir / "accuracy_vs_noise.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_demo_with_the_same_seed_gives_identical_results(demo_run, tmp_path):
    _, report = demo_run
    again = run_demo(tmp_path, SMALL, show_progress=False)
    assert again.rows == report.rows
