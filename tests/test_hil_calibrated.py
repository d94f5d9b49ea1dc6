"""Calibrate → train → recalibrate: ``ChipCalibration`` (a Trainer callback),
``calibrated_train`` and the study's calibrated-physical-surrogate arm."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from torch import nn

import analogtorch as at
from analogtorch.data import Split
from analogtorch.hil import ChipCalibration, MeasurementPlan, VirtualChip, calibrated_train
from analogtorch.hil import study as hil_study
from analogtorch.hil.study_config import load_config
from analogtorch.hil.train import evaluate_on_backend

PCM = at.HardwareProfile.preset("pcm")
SMALL = {"programming_devices": 400, "drift_devices": 150, "transfer_devices": 4}


def blobs(n_batches: int = 6, batch: int = 16, seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    centers = 1.5 * torch.randn(4, 16, generator=gen)
    labels = torch.randint(0, 4, (n_batches * batch,), generator=gen)
    x = centers[labels] + 0.5 * torch.randn(n_batches * batch, 16, generator=gen)
    return list(zip(x.split(batch), labels.split(batch), strict=True))


def pcm_mlp() -> nn.Module:
    torch.manual_seed(0)
    return at.convert(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), PCM)


def test_refresh_moves_every_layer_onto_the_calibrated_profile():
    model = pcm_mlp()
    calibration = ChipCalibration(model, VirtualChip(seed=0), PCM, plan=MeasurementPlan(**SMALL))
    result = calibration.refresh()
    for layer in (model[0], model[2]):
        assert layer.profile == result.profile
    # what the chip has and the pcm preset lacks is now in the training surrogate
    assert result.profile.transfer_curve == "sinh"
    assert result.profile.wire_resistance_ohm > 1.0
    assert result.profile.read_noise_std > 2 * PCM.read_noise_std


def test_each_refresh_pools_a_new_round_and_shrinks_the_standard_errors():
    model = pcm_mlp()
    calibration = ChipCalibration(
        model, VirtualChip(seed=0), PCM, plan=MeasurementPlan(**SMALL), refresh_every=2
    )
    calibration.refresh()
    for step in range(6):
        calibration.on_step_end(None, 0, step)
    assert len(calibration.history) == 1 + 6 // 2
    first, last = calibration.history[0].fits["drift"], calibration.history[-1].fits["drift"]
    assert last.n_devices > 3.5 * first.n_devices
    # four rounds: standard errors about halve (1/sqrt(4))
    assert last.read_noise_std.stderr < 0.6 * first.read_noise_std.stderr
    assert last.nu_mean.stderr < 0.6 * first.nu_mean.stderr
    assert len(calibration.stuck_devices) == 4


def test_chip_calibration_checks_its_arguments():
    class NoMeasurements:
        name = "plain"

    with pytest.raises(TypeError, match="measurement mode"):
        ChipCalibration(pcm_mlp(), NoMeasurements(), PCM)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refresh_every=0"):
        ChipCalibration(pcm_mlp(), VirtualChip(), PCM, refresh_every=0)
    with pytest.raises(ValueError, match="analog layers"):
        ChipCalibration(nn.Sequential(nn.Linear(2, 2)), VirtualChip(), PCM)
    with pytest.raises(TypeError, match="base"):
        ChipCalibration(pcm_mlp(), VirtualChip(), "pcm")  # type: ignore[arg-type]


def test_calibrated_train_measures_the_chip_but_never_computes_on_it():
    model, chip = pcm_mlp(), VirtualChip(seed=1)
    loader = blobs()
    before = evaluate_on_backend(pcm_mlp(), VirtualChip(seed=1), loader)
    result = calibrated_train(
        model, chip, loader, steps=8, lr=1e-2, plan=MeasurementPlan(**SMALL), refresh_every=4
    )
    assert chip.calls == 0 and result.device_reads == chip.device_reads > 0
    assert len(result.calibrations) == 1 + 8 // 4
    assert model[0].profile == result.calibrations[-1].profile
    assert torch.isfinite(torch.tensor(result.loss))
    after = evaluate_on_backend(model, VirtualChip(seed=1), loader)
    assert after >= before - 0.05
    with pytest.raises(ValueError, match="steps=0"):
        calibrated_train(model, chip, loader, steps=0)


def test_study_config_takes_a_calibrate_section(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "calibrate": {"refresh_every": 50}}))
    config = load_config(path)
    assert config["calibrate"]["refresh_every"] == 50
    assert config["calibrate"]["measurements"] == MeasurementPlan().model_dump(mode="json")
    for bad, key in [
        ({"refresh_every": 0}, "calibrate.refresh_every=0"),
        ({"measurements": {"reads": 0}}, "calibrate.measurements.reads=0"),
        ({"measurements": {"readz": 3}}, "calibrate.measurements.readz"),
    ]:
        path.write_text(yaml.safe_dump({"name": "s", "calibrate": bad}))
        with pytest.raises(ValueError, match=re.escape(key)):
            load_config(path)


def test_the_study_runs_the_calibrated_arm_next_to_the_others(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    centers = torch.rand(4, 1, 4, 4, generator=gen)

    def synthetic(name: str, split: str, data_dir: object = None) -> Split:
        labels = torch.randint(0, 4, (96,), generator=gen)
        images = centers[labels] + 0.1 * torch.randn(96, 1, 4, 4, generator=gen)
        return Split(images.clamp(0, 1), labels)

    monkeypatch.setattr(hil_study, "load_dataset", synthetic)
    path = tmp_path / "tiny.yaml"
    settings = {
        "name": "tiny",
        "train_subset": 96,
        "test_subset": 96,
        "hidden": [16],
        "batch_size": 32,
        "digital_epochs": 2,
        "hwa_epochs": 1,
        "steps": 4,
        "calibration_batches": 1,
        "recalibrate_every": 2,
        "chips": [0],
        "seeds": [0],
        "calibrate": {"measurements": SMALL, "refresh_every": 2},
    }
    path.write_text(yaml.safe_dump(settings))
    markdown = hil_study.run_hil_study(load_config(path), tmp_path / "run")
    for method in hil_study.METHODS:
        assert f"| {method}" in markdown or f"| {method} (" in markdown
    record = json.loads((tmp_path / "run" / "summary.json").read_text())
    (cell,) = record["cells"]
    assert set(cell["accuracy"]) == set(hil_study.METHODS)
    assert cell["backend_calls"]["calibrated physical surrogate"] == 0
    assert len(cell["calibrations"]) == 1 + 4 // 2
    assert "transfer_nonlinearity" in cell["calibrations"][-1]
    assert "| read_noise_std |" in markdown
