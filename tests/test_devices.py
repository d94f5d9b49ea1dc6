"""Devices: the names a user gives (`resolve_device`), the study command's `--device`, the
run fingerprint that keeps one run on one device, and (where torch sees a GPU) a robustness
study on CUDA against the same study on the CPU (the AIS one: test_ais_study.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from analogtorch.cli import _study_runner, app
from analogtorch.config_files import shipped_configs
from analogtorch.devices import module_device, resolve_device
from analogtorch.runs import RunConflictError, open_run
from analogtorch.train.robustness import complete_config, run_study

CUDA = torch.cuda.is_available()


def test_resolve_device_takes_cpu_and_auto_and_names_what_it_refuses() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    with pytest.raises(ValueError, match="'gpu0' is not a device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="runs take cpu, cuda"):
        resolve_device("meta")
    if not CUDA:
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")
    else:
        with pytest.raises(ValueError, match="CUDA GPU\\(s\\)"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_module_device_is_the_first_tensor_s_and_the_cpu_without_one() -> None:
    assert module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(nn.ReLU()) == torch.device("cpu")
    meta = nn.Linear(2, 2, device="meta")
    assert module_device(meta) == torch.device("meta")
    buffers_only = nn.BatchNorm1d(2, affine=False, device="meta")
    assert module_device(buffers_only) == torch.device("meta")


@pytest.mark.skipif(CUDA, reason="the refusal is for machines without a GPU")
def test_study_device_cuda_without_a_gpu_is_refused_before_any_folder_is_made(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["study", "mnist-mlp", "--device", "cuda", "--out", str(tmp_path / "run")]
    )
    assert isinstance(result.exception, ValueError)
    assert "sees no CUDA GPU" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_only_robustness_and_ais_studies_take_a_gpu() -> None:
    deq = shipped_configs()["deq/maze"]
    with pytest.raises(ValueError, match="only robustness and AIS studies run on a GPU"):
        _study_runner(deq, "cuda")
    for accepted in ("robustness/mnist-mlp", "ais/mnist"):
        _study_runner(shipped_configs()[accepted], "cuda")


def test_a_run_on_one_device_is_not_resumed_on_another(tmp_path) -> None:
    config = {"a": 1}
    with open_run("study", "x", config, out=tmp_path) as run:
        assert "device" not in run.fingerprint  # CPU fingerprints as before
    refused = pytest.raises(RunConflictError, match=r"the device \(cpu -> cuda\)")
    with refused, open_run("study", "x", config, out=tmp_path, device="cuda"):
        pass
    with open_run("study", "y", config, out=tmp_path / "gpu", device="cuda") as run:
        assert json.loads((run.path / "fingerprint.json").read_text())["device"] == "cuda"
    refused = pytest.raises(RunConflictError, match=r"the device \(cuda -> cpu\)")
    with refused, open_run("study", "y", config, out=tmp_path / "gpu"):
        pass


TINY = {
    "name": "tiny-device",
    "dataset": "digits",
    "model": "demo-mlp",
    "train": {"epochs": 2, "finetune_epochs": 1, "batch_size": 128},
    "methods": ["fp32", "noise-aware-norm", "noisy-machines", "physics-informed"],
    "seeds": [0],
    "eval": {"chips": 2, "bits": [4], "noise_scales": [0.0, 1.0], "times": [1.0]},
}


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_robustness_study_on_cuda_matches_the_cpu_study(tmp_path) -> None:
    config = complete_config(dict(TINY))
    cpu = run_study(config, tmp_path / "cpu", show_progress=False)
    gpu = run_study(config, tmp_path / "gpu", show_progress=False, device="cuda")
    for on_cpu, on_gpu in zip(cpu, gpu, strict=True):
        for a, b in zip(on_cpu["rows"], on_gpu["rows"], strict=True):
            # same data order, augmentation and chips; float sums and read noise differ
            assert b["accuracy_mean"] == pytest.approx(a["accuracy_mean"], abs=0.05)
