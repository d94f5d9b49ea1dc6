"""Atomic writes and once-only work under concurrent processes (cells on Ray workers)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from analogtorch.files import atomic_path, exclusive, write_atomic
from analogtorch.train.model_cache import trained_once


def test_a_write_that_raises_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as partial:
        partial.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_two_writers_of_one_file_use_different_temporary_files(tmp_path):
    """The race of the Ray study: writer B's rename must not find A's temporary gone."""
    path = tmp_path / "model.ckpt"
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first != second
        first.write_text("a")
        second.write_text("b")
    assert path.read_text() == "a"  # the outer block ends last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


def _hold(path: str, seconds: float, started: str) -> None:
    with exclusive(Path(path)):
        Path(started).write_text("held")
        time.sleep(seconds)


def test_exclusive_waits_for_the_process_that_holds_the_file(tmp_path):
    started = tmp_path / "started"
    other = multiprocessing.get_context("fork").Process(
        target=_hold, args=(str(tmp_path / "x.pt"), 1.0, str(started))
    )
    other.start()
    while not started.exists():
        time.sleep(0.01)
    t0 = time.perf_counter()
    with exclusive(tmp_path / "x.pt"):
        waited = time.perf_counter() - t0
    other.join()
    assert waited > 0.5


def _train_once(path: str, log: str) -> list[float]:
    model = nn.Linear(3, 2)
    nn.init.zeros_(model.weight)

    def train() -> None:
        with open(log, "a") as f:
            f.write("trained\n")
        time.sleep(0.5)  # the other process arrives while this one trains
        with torch.no_grad():
            model.weight.fill_(7.0)

    return trained_once(model, Path(path), train).weight.flatten().tolist()


def test_cells_started_together_train_the_shared_model_once(tmp_path):
    path, log = tmp_path / "models" / "fp32-seed0.pt", tmp_path / "log"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        weights = pool.starmap(_train_once, [(str(path), str(log))] * 2)
    assert log.read_text() == "trained\n"
    assert weights == [[7.0] * 6, [7.0] * 6]  # the waiting one loaded the trained file
    assert torch.load(path, weights_only=True)["weight"].eq(7.0).all()
