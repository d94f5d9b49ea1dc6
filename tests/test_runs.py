"""Resumable study cells: one JSON per finished cell, reruns skip finished cells."""

from __future__ import annotations

import json
import math
import os

import pytest
import yaml

from analogtorch.runs import (
    RunConflictError,
    RunLockedError,
    cell_path,
    config_hash,
    open_run,
    run_cells,
)
from analogtorch.study_cells import mean_std

CELLS = [
    ("a=1", {"a": 1, "b": 2.5}),
    ("a=2", {"a": 2, "b": -1.0}),
    ("a_3.x+y-z", {"a": 3, "b": 0.0}),
]


def _product(params):
    return {"product": params["a"] * params["b"]}


def _must_not_run(params):
    raise AssertionError(f"cell {params} was recomputed")


def test_each_cell_is_written_to_its_own_json_file(tmp_path):
    records = run_cells(CELLS, _product, tmp_path)
    files = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert files == sorted(f"{key}.json" for key, _ in CELLS)
    for (key, params), record in zip(CELLS, records, strict=True):
        expected = {"key": key, **params, "product": params["a"] * params["b"]}
        assert record == expected
        assert json.loads(cell_path(tmp_path, key).read_text()) == expected
    assert not list((tmp_path / "cells").glob(".*partial"))


def test_a_rerun_does_not_recompute_finished_cells(tmp_path):
    first = run_cells(CELLS, _product, tmp_path)
    second = run_cells(CELLS, _must_not_run, tmp_path)
    assert second == first


def test_an_interrupted_study_resumes_with_only_the_missing_cells(tmp_path):
    calls = []

    def flaky(params):
        calls.append(params["a"])
        if params["a"] == 2 and len(calls) == 2:
            raise KeyboardInterrupt  # the study is stopped in the middle
        return _product(params)

    with pytest.raises(KeyboardInterrupt):
        run_cells(CELLS, flaky, tmp_path)
    assert cell_path(tmp_path, "a=1").exists() and not cell_path(tmp_path, "a=2").exists()
    records = run_cells(CELLS, flaky, tmp_path)
    assert calls == [1, 2, 2, 3]
    assert [r["product"] for r in records] == [2.5, -2.0, 0.0]


def test_records_come_back_in_the_order_of_the_cells(tmp_path):
    run_cells(CELLS[1:], _product, tmp_path)
    records = run_cells(list(reversed(CELLS)), _product, tmp_path)
    assert [r["key"] for r in records] == [key for key, _ in reversed(CELLS)]


def test_duplicate_keys_are_rejected_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        run_cells([CELLS[0], CELLS[0]], _must_not_run, tmp_path)
    assert not (tmp_path / "cells").exists()


@pytest.mark.parametrize("key", ["", "a/b", "../up", "a b", "x:y", "ä"])
def test_keys_that_are_not_safe_file_names_are_rejected(tmp_path, key):
    with pytest.raises(ValueError, match="cell key"):
        run_cells([(key, {})], _must_not_run, tmp_path)
    with pytest.raises(ValueError, match="cell key"):
        cell_path(tmp_path, key)


def test_unknown_backend_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        run_cells(CELLS, _must_not_run, tmp_path, backend="dask")


def test_mean_and_sample_standard_deviation_by_hand():
    mean, std = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert mean == pytest.approx(5.0)
    # Σ (v − 5)² = 32, sample variance 32 / 7
    assert std == pytest.approx(math.sqrt(32 / 7), rel=1e-12)


def test_mean_std_of_a_single_value_has_zero_spread():
    assert mean_std([3.5]) == (3.5, 0.0)


# -- run folders ------------------------------------------------------------------------------

CONFIG = {"name": "tiny", "train": {"epochs": 2, "lr": 0.1}, "seeds": [0, 1]}


def test_the_default_run_folder_names_command_name_and_config_hash(tmp_path):
    with open_run("study", "tiny", CONFIG, runs_dir=tmp_path) as run:
        pass
    assert run.path.parent == tmp_path
    assert run.path.name == f"study-tiny-{config_hash(CONFIG)[:8]}"
    assert yaml.safe_load((run.path / "config.yaml").read_text()) == CONFIG
    stored = json.loads((run.path / "fingerprint.json").read_text())
    assert stored["config"] == config_hash(CONFIG) and stored["command"] == "study"


def test_the_same_fingerprint_resumes_and_keeps_what_is_there(tmp_path):
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r") as run:
        assert not run.resumed
        run.write_text("report.md", "first")
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r") as run:
        assert run.resumed
        assert (run.path / "report.md").read_text() == "first"


def test_a_changed_config_is_refused_naming_the_keys_that_differ(tmp_path):
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r") as run:
        run.write_text("report.md", "old numbers")
    changed = {**CONFIG, "train": {"epochs": 5, "lr": 0.1}, "seeds": [0]}
    with (
        pytest.raises(RunConflictError, match=r"config keys seeds, train\.epochs differ"),
        open_run("study", "tiny", changed, out=tmp_path / "r"),
    ):
        pass
    assert (tmp_path / "r" / "report.md").read_text() == "old numbers"  # nothing touched


def test_overwrite_empties_a_folder_of_another_configuration(tmp_path):
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r") as run:
        run.write_text("report.md", "old numbers")
    changed = {**CONFIG, "seeds": [0]}
    with open_run("study", "tiny", changed, out=tmp_path / "r", overwrite=True) as run:
        assert not run.resumed
        assert not (run.path / "report.md").exists()
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text()) == changed


def test_other_data_or_command_is_a_conflict_too(tmp_path):
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r", data="mnist:aaaa"):
        pass
    with (
        pytest.raises(RunConflictError, match=r"the data \(mnist:aaaa -> mnist:bbbb\)"),
        open_run("study", "tiny", CONFIG, out=tmp_path / "r", data="mnist:bbbb"),
    ):
        pass
    with (
        pytest.raises(RunConflictError, match="the command"),
        open_run("demo", "tiny", CONFIG, out=tmp_path / "r", data="mnist:aaaa"),
    ):
        pass


def test_a_folder_not_written_by_a_run_or_a_file_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with (
        pytest.raises(RunConflictError, match="not written by an analogtorch run"),
        open_run("study", "tiny", CONFIG, out=tmp_path / "mine"),
    ):
        pass
    (tmp_path / "file").write_text("x")
    with (
        pytest.raises(RunConflictError, match="is a file"),
        open_run("study", "tiny", CONFIG, out=tmp_path / "file"),
    ):
        pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_second_writer_of_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    held = rf"another analogtorch process \(pid {os.getpid()}\)"
    with (
        open_run("study", "tiny", CONFIG, out=tmp_path / "r"),
        pytest.raises(RunLockedError, match=held),
        open_run("study", "tiny", CONFIG, out=tmp_path / "r"),
    ):
        pass
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r") as run:  # released
        assert run.resumed


def test_files_are_written_without_leaving_partial_files(tmp_path):
    with open_run("study", "tiny", CONFIG, out=tmp_path / "r") as run:
        run.write_json("summary.json", {"a": 1})
        run.write_csv("results.csv", [{"x": 1, "y": 2}])
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert not any("partial" in n for n in names)
    assert (tmp_path / "r" / "results.csv").read_text().splitlines() == ["x,y", "1,2"]
