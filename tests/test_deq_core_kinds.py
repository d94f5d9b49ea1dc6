"""Core-kind studies (``kind: physics`` with ``kinds``): the optional cosine learning-rate
schedule of ``train.schedule`` and the plain / CC comparison on an image task."""

from __future__ import annotations

import gzip
import json
import math
import re
import struct

import numpy as np
import pytest
import torch

from analogtorch.deq.study import complete_config, run_deq_study
from analogtorch.runs import config_hash

_PHYSICS = {
    "name": "s",
    "kind": "physics",
    "tasks": ["heat"],
    "kinds": ["plain"],
    "n_train": 24,
    "n_test": 8,
    "model": {"width": 32, "tol": 1e-2},
    "train": {"epochs": 2, "lr": 1e-2, "batch_size": 8},
    "eval": {"chips": 1},
}


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _fake_mnist(directory, seed: int = 0) -> None:
    """Random 28×28 images and labels in the four MNIST IDX files (40 train, 20 test)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    for prefix, count in (("train", 40), ("t10k", 20)):
        _write_idx(
            directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28))
        )
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, count))


def test_schedule_key_is_left_out_while_unset_so_fingerprints_stay():
    without = complete_config(dict(_PHYSICS))
    explicit_none = complete_config({**_PHYSICS, "train": {**_PHYSICS["train"], "schedule": None}})
    cosine = complete_config({**_PHYSICS, "train": {**_PHYSICS["train"], "schedule": "cosine"}})
    assert "schedule" not in without["train"]
    assert config_hash(without) == config_hash(explicit_none) != config_hash(cosine)
    assert cosine["train"]["schedule"] == "cosine"


def test_unknown_schedule_names_its_key():
    bad = {**_PHYSICS, "train": {**_PHYSICS["train"], "schedule": "step"}}
    with pytest.raises(ValueError, match=re.escape("train.schedule='step'")):
        complete_config(bad, "s.yaml")


@pytest.mark.parametrize(("schedule", "final_lr"), [(None, 1e-2), ("cosine", 0.0)])
def test_cosine_schedule_ends_the_study_training_at_zero_lr(tmp_path, schedule, final_lr):
    # lr(t) = lr_max (1 + cos(π t / T)) / 2 reaches 0 at t = T; a constant lr stays lr_max.
    train = {**_PHYSICS["train"], "schedule": schedule}
    config = complete_config({**_PHYSICS, "train": train})
    run_deq_study(config, tmp_path)
    checkpoint = torch.load(tmp_path / "models" / "ckpt-heat-plain-0.pt", weights_only=False)
    rates = [g["lr"] for g in checkpoint["optimizer"]["param_groups"]]
    assert rates == pytest.approx([final_lr] * len(rates), abs=1e-12)


def test_pi_on_an_image_task_is_refused_for_want_of_a_physics_prior():
    with pytest.raises(ValueError, match=re.escape("model.physics='mnist' (task 'mnist')")):
        complete_config({**_PHYSICS, "tasks": ["mnist"], "kinds": ["plain", "pi"]}, "s.yaml")


def test_plain_and_cc_cores_on_an_image_task_report_error_rate_in_percent(tmp_path):
    _fake_mnist(tmp_path / "data" / "mnist")
    config = complete_config(
        {**_PHYSICS, "tasks": ["mnist"], "kinds": ["plain", "cc"], "n_train": 32, "n_test": 16}
    )
    report = run_deq_study(config, tmp_path / "run", data_dir=str(tmp_path / "data"))
    cells = json.loads((tmp_path / "run" / "summary.json").read_text())["cells"]
    assert sorted(c["arm"] for c in cells) == ["cc", "plain"]
    for cell in cells:
        assert cell["task_kind"] == "classification" and "residual" not in cell
        # 16 test images: the error rate is a multiple of 100/16 %, shown unscaled.
        assert math.isclose(cell["error"] * 16 / 100, round(cell["error"] * 16 / 100))
        assert f"| mnist | {cell['arm']} | {cell['error']:.2f} ± 0.00 | — |" in report


def test_a_task_list_with_an_image_dataset_fingerprints_its_files(tmp_path):
    from analogtorch.data import dataset_fingerprint
    from analogtorch.runs import config_datasets, data_identity, resolve_data_dir

    _fake_mnist(tmp_path / "a" / "mnist", seed=0)
    _fake_mnist(tmp_path / "b" / "mnist", seed=1)
    tasks = config_datasets({"tasks": ["heat", "mnist"]})
    assert tasks == ["heat", "mnist"]
    first, second = (data_identity(tasks, tmp_path / d) for d in ("a", "b"))
    assert first == dataset_fingerprint("mnist", tmp_path / "a")
    assert first != second  # other files: a resumed run folder refuses them
    assert data_identity(["heat", "burgers"], tmp_path / "a") is None  # generated only
    assert resolve_data_dir(tasks, tmp_path / "a") == (tmp_path / "a").absolute()
