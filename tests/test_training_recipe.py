"""The training recipe pieces: CIFAR augmentation, cosine schedule, settings, per-epoch resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analogtorch.train.methods as methods
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.train.augment import augmented, crop_flip
from analogtorch.train.lr_schedule import CosineSchedule
from analogtorch.train.methods import MethodSpec, TrainSettings, train_fp32, train_method


def _reference_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int):
    """Image by image, written from the definition (same draws, same order)."""
    offsets = torch.randint(0, 2 * padding + 1, (2, len(x)), generator=generator)
    flip = torch.rand(len(x), generator=generator) < 0.5
    out = []
    for image, dy, dx, mirror in zip(x, offsets[0], offsets[1], flip, strict=True):
        padded = F.pad(image, (padding,) * 4)
        window = padded[:, dy : dy + x.shape[2], dx : dx + x.shape[3]]
        out.append(window.flip(2) if mirror else window)
    return torch.stack(out)


@pytest.mark.parametrize("padding", [0, 2, 4])
def test_crop_flip_matches_a_per_image_reference(padding):
    x = torch.randn(16, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    got = crop_flip(x, torch.Generator().manual_seed(1), padding)
    expected = _reference_crop_flip(x, torch.Generator().manual_seed(1), padding)
    assert torch.equal(got, expected)


def test_crop_flip_draws_every_offset_and_both_orientations_equally_often():
    x = torch.arange(1.0, 65.0).reshape(1, 1, 8, 8).expand(4000, 1, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(2), padding=4)[:, 0]
    sample, rows, cols = torch.nonzero(out == x[0, 0, 3, 3], as_tuple=True)
    assert set(rows.tolist()) == set(range(8)) and set(cols.tolist()) == set(range(8))
    # Where the centre pixel and its right-hand neighbour are both in the window, the
    # neighbour sits on the right (not mirrored) or on the left (mirrored), half each.
    right = (cols < 7) & (out[sample, rows, (cols + 1).clamp(max=7)] == x[0, 0, 3, 4])
    left = (cols > 0) & (out[sample, rows, (cols - 1).clamp(min=0)] == x[0, 0, 3, 4])
    fraction = right.sum().item() / (right.sum() + left.sum()).item()
    assert abs(fraction - 0.5) < 0.04  # > 5 standard errors at n ~ 3500


def test_augmented_batches_depend_only_on_seed_and_epoch():
    batches = [
        (torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(k)), None)
        for k in range(3)
    ]
    first = [x for x, _ in augmented(batches, seed=5, epoch=2)]
    again = [x for x, _ in augmented(batches, seed=5, epoch=2)]
    other = [x for x, _ in augmented(batches, seed=5, epoch=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_cosine_schedule_warms_up_linearly_then_follows_the_cosine_to_zero():
    schedule = CosineSchedule(0.1, epochs=10, steps_per_epoch=4, warmup_epochs=2)
    assert schedule.rate(1.0) == pytest.approx(0.05)
    assert schedule.rate(2.0) == pytest.approx(0.1)
    assert schedule.rate(6.0) == pytest.approx(0.05)  # halfway through the cosine part
    assert schedule.rate(2 + 8 / 3) == pytest.approx(0.1 * (1 + math.cos(math.pi / 3)) / 2)
    assert schedule.rate(10.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"optimizer": "sgdd"}, "optimizer"),
        ({"schedule": "cosin"}, "schedule"),
        ({"augment": "flip"}, "augment"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -0.1}, "lr"),
        ({"momentum": 1.5}, "momentum"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"label_smoothing": 2.0}, "label_smoothing"),
        ({"warmup_epochs": 3, "epochs": 3}, "warmup_epochs"),
        ({"warmup_epochs": None}, "warmup_epochs"),
        ({"epochs": True}, "epochs"),
        ({"lr": True}, "lr"),
    ],
)
def test_train_settings_reject_bad_values_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=f"train.{field}="):
        TrainSettings(**changes)


class _Crash:
    def on_epoch_start(self, trainer, epoch):
        if epoch == 2:
            raise KeyboardInterrupt


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(40, 3, 6, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))


def test_fp32_training_resumes_from_its_epoch_checkpoint_exactly(tmp_path, monkeypatch):
    settings = TrainSettings(
        epochs=4,
        lr=0.05,
        batch_size=8,
        optimizer="sgd",
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=1,
        label_smoothing=0.1,
        augment="crop-flip",
    )
    full = train_fp32(_model(), _data(), settings, seed=3)
    checkpoint = tmp_path / "fp32.ckpt"
    crashing = methods.Trainer
    monkeypatch.setattr(
        methods,
        "Trainer",
        lambda *a, **k: crashing(*a, **{**k, "callbacks": (*k["callbacks"], _Crash())}),
    )
    with pytest.raises(KeyboardInterrupt):
        train_fp32(_model(), _data(), settings, seed=3, checkpoint=checkpoint)
    monkeypatch.undo()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    resumed = train_fp32(_model(), _data(), settings, seed=3, checkpoint=checkpoint)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _flat_data():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(48, 36, generator=gen), torch.randint(0, 3, (48,), generator=gen)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(36, 36), nn.ReLU(), nn.Linear(36, 36), nn.ReLU(), nn.Linear(36, 3)
    )


PI_SETTINGS = TrainSettings(epochs=1, finetune_epochs=4, lr=0.01, finetune_lr=0.01, batch_size=16)


def test_physics_informed_fine_tuning_resumes_from_its_epoch_checkpoint_exactly(
    tmp_path, monkeypatch
):
    """Analog layers, clipped weights, noise ramp and residual blocks: an interrupted
    fine-tune resumed from its checkpoint equals the uninterrupted one."""
    profile = HardwareProfile.preset("seed-4bit-10pct")
    spec = MethodSpec.parse({"method": "physics-informed", "options": {"residual": True}})
    fp32 = train_fp32(_mlp(), _flat_data(), PI_SETTINGS, seed=1)
    full = train_method(spec, fp32, _flat_data(), PI_SETTINGS, profile, seed=2)
    checkpoint = tmp_path / "pi.ckpt"
    crashing = methods.Trainer
    monkeypatch.setattr(
        methods,
        "Trainer",
        lambda *a, **k: crashing(*a, **{**k, "callbacks": (*k["callbacks"], _Crash())}),
    )
    with pytest.raises(KeyboardInterrupt):
        train_method(spec, fp32, _flat_data(), PI_SETTINGS, profile, seed=2, checkpoint=checkpoint)
    monkeypatch.undo()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    resumed = train_method(
        spec, fp32, _flat_data(), PI_SETTINGS, profile, seed=2, checkpoint=checkpoint
    )
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["fp32", "noise-aware-norm", "qat", "physics-informed"])
def test_every_method_fp32_included_trains_for_the_same_total_epochs(method, monkeypatch):
    epochs: list[int] = []
    real = methods.Trainer

    def counting(*args, **kwargs):
        epochs.append(kwargs["epochs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(methods, "Trainer", counting)
    fp32 = train_fp32(_mlp(), _flat_data(), PI_SETTINGS, seed=1)
    profile = HardwareProfile.preset("seed-4bit-10pct")
    train_method(MethodSpec.parse(method), fp32, _flat_data(), PI_SETTINGS, profile, seed=2)
    assert sum(epochs) == PI_SETTINGS.epochs + PI_SETTINGS.finetune_epochs
