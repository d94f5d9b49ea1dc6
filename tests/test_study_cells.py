"""Resumable study cells: one JSON per finished cell, reruns skip finished cells."""

from __future__ import annotations

import json
import math

import pytest

from analogtorch.study_cells import cell_path, mean_std, run_cells

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
    assert not list((tmp_path / "cells").glob("*.partial"))


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
