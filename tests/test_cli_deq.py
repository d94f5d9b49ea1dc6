"""`analogtorch deq`: task list, train on a task, resumable studies, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from typer.testing import CliRunner

from analogtorch.cli import app

runner = CliRunner()
TERMINAL = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}


def test_deq_tasks_lists_the_physics_tasks():
    result = runner.invoke(app, ["deq", "tasks"], env=TERMINAL)
    assert result.exit_code == 0, result.output
    for name in ("linear", "lorenz", "heat", "pendulum", "mackey-glass", "mnist"):
        assert name in result.output


def test_deq_train_on_a_synthetic_task_writes_a_record_and_a_plot(tmp_path):
    args = ["deq", "train", "linear", "--epochs", "1", "--n-train", "64", "--n-test", "32"]
    args += ["--width", "8", "--chips", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, args, env=TERMINAL)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "summary.json").read_text())
    (cell,) = record["cells"]
    assert cell["arm"] == "physics-aware"
    assert 0 < cell["error"] < 10  # relative L2 error of a barely trained model
    assert cell["iterations"] >= 1
    relaxation = cell["relaxation"]
    assert relaxation["tau_s"] == 1e-12 / 25e-6  # pcm: 1 pF node over g_max = 25 µS
    assert relaxation["settling_time_s"] > 0
    assert (tmp_path / "results.png").stat().st_size > 0
    assert "settling time (ns)" in result.output
    # a regression task reports its relative L2 error, never an "accuracy" of 100 - error
    assert "relative L2 error (%)" in result.output and "accuracy" not in result.output


def _physics_config(tmp_path, **changes):
    config = {
        "kind": "physics",
        "tasks": ["linear"],
        "profile": "pcm",
        "model": {"width": 8},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 256},
        "eval": {"chips": 1, "time_s": 0.0},
        "seeds": [0],
        **changes,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_deq_study_resumes_without_recomputing_finished_cells(tmp_path):
    config = _physics_config(tmp_path)
    out = tmp_path / "out"
    first = runner.invoke(app, ["deq", "study", str(config), "--out", str(out)], env=TERMINAL)
    assert first.exit_code == 0, first.output
    cells = sorted((out / "cells").glob("*.json"))
    assert [c.stem for c in cells] == [
        "linear-digital_DEQ-seed0",
        "linear-explicit-seed0",
        "linear-hybrid-seed0",
    ]
    stamps = {c: c.stat().st_mtime_ns for c in cells}
    second = runner.invoke(app, ["deq", "study", str(config), "--out", str(out)], env=TERMINAL)
    assert second.exit_code == 0, second.output
    assert {c: c.stat().st_mtime_ns for c in cells} == stamps
    assert "| linear |" in second.output


def test_deq_study_with_an_unknown_key_is_a_one_line_error(tmp_path):
    config = _physics_config(tmp_path, epochs=3)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from analogtorch.cli import main; main()",
            "deq",
            "study",
            str(config),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert (
        done.stderr.startswith("error:")
        and "epochs=3: unknown key" in done.stderr
        and done.stderr.count("\n") == 1
    )


def test_deq_train_kind_pi_uses_the_task_physics(tmp_path):
    args = ["deq", "train", "heat", "--kind", "pi", "--epochs", "1", "--n-train", "64"]
    args += ["--n-test", "32", "--width", "40", "--chips", "1", "--out", str(tmp_path)]
    result = runner.invoke(app, args, env=TERMINAL)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "summary.json").read_text())["config"]
    assert config["model"]["kind"] == "pi"


def test_deq_train_kind_pi_with_unknown_physics_lists_the_known_ones(tmp_path):
    args = ["deq", "train", "heat", "--kind", "pi", "--physics", "wave", "--out", str(tmp_path)]
    result = runner.invoke(app, args, env=TERMINAL)
    assert result.exit_code != 0
    assert "known: burgers, heat, linear" in str(result.exception) + result.output


def test_deq_study_compares_core_kinds_with_the_equation_residual(tmp_path):
    config = _physics_config(
        tmp_path, tasks=["heat"], kinds=["plain", "pi", "cc"], n_train=64, n_test=32
    )
    config_data = yaml.safe_load(config.read_text())
    config_data["model"] = {"width": 40}
    config.write_text(yaml.safe_dump(config_data))
    out = tmp_path / "out"
    result = runner.invoke(app, ["deq", "study", str(config), "--out", str(out)], env=TERMINAL)
    assert result.exit_code == 0, result.output
    cells = {c["arm"]: c for c in json.loads((out / "summary.json").read_text())["cells"]}
    assert sorted(cells) == ["cc", "pi", "plain"]
    for cell in cells.values():
        assert cell["residual"] > cell["residual_exact"]
    assert "| heat | pi |" in result.output
