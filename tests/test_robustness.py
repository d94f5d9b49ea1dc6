"""Robustness studies: methods, the study runner (resume, report) and the `study` command."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from analogtorch.cli import app
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.base import analog_layers
from analogtorch.nn.residual import StochasticResidual
from analogtorch.train.baselines import (
    NoiseInjection,
    noise_injection_convert,
    qat_convert,
    strip_baselines,
)
from analogtorch.train.evaluate import evaluate
from analogtorch.train.methods import (
    MethodSpec,
    TrainSettings,
    add_stochastic_residuals,
    distillation_loss,
    noise_ramp,
    train_fp32,
    train_method,
)
from analogtorch.train.robustness import complete_config, run_study
from analogtorch.train.robustness_report import pooled, write_report
from analogtorch.train.schedules import Curriculum, CurriculumProfiles, Stage, make_schedule

PROFILE = HardwareProfile.preset("seed-4bit-10pct")


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)
    )


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    centres = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centres[y] + 0.3 * torch.randn(n, 4, generator=gen), y


def test_distillation_loss_matches_hand_computed_value() -> None:
    teacher = nn.Linear(2, 2, bias=False)
    student = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        student.weight.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.5]]))
    x, y = torch.tensor([[1.0, 1.0]]), torch.tensor([0])
    t_logits, s_logits = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5])
    temp, lam = 2.0, 0.25
    p = torch.softmax(t_logits / temp, 0)
    q = torch.softmax(s_logits / temp, 0)
    kl = float((p * (p.log() - q.log())).sum())
    ce = math.log(2.0)  # student logits are equal
    expected = (1 - lam) * ce + lam * temp**2 * kl
    loss, _ = distillation_loss(teacher, lam, temp)(student, x, y)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)


def test_distillation_loss_rejects_bad_weight() -> None:
    with pytest.raises(ValueError, match="distill_weight"):
        distillation_loss(nn.Linear(2, 2), 1.5, 2.0)


def test_strip_baselines_returns_the_trained_digital_layers() -> None:
    model = qat_convert(_mlp(), 4)
    inner = model[1].module
    stripped = strip_baselines(model)
    assert stripped[1] is inner
    assert not any(
        isinstance(m, NoiseInjection)
        for m in strip_baselines(noise_injection_convert(_mlp(), 0.05)).modules()
    )


def test_noise_ramp_specs_hit_their_end_points() -> None:
    for kind in ("linear", "exponential"):
        schedule = make_schedule(noise_ramp(kind, 50))
        assert float(schedule(50)) == pytest.approx(1.0)
        assert float(schedule(0)) < 0.02
    assert float(make_schedule(noise_ramp("constant", 50))(0)) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        noise_ramp("cosine", 10)


def test_curriculum_profiles_drive_plain_analog_models() -> None:
    from analogtorch.nn.convert import convert

    model = convert(_mlp(), PROFILE)
    ramp = Stage("ramp", 0, noise_scale=noise_ramp("linear", 10))
    callback = CurriculumProfiles(Curriculum((ramp,)), PROFILE, steps_per_epoch=5)

    class _T:
        pass

    trainer = _T()
    trainer.model = model
    callback.on_step_end(trainer, 1, 1)  # step 7 of 10
    for layer in analog_layers(model).values():
        assert layer.profile.prog_noise_std == pytest.approx(0.07)


def test_stochastic_residuals_wrap_only_square_relu_blocks() -> None:
    model = _mlp()
    assert add_stochastic_residuals(model, PROFILE, seed=0) == 1
    assert isinstance(model[3], StochasticResidual) and isinstance(model[4], nn.Identity)
    x = torch.randn(5, 4)
    model.eval()
    reference = _mlp().eval()
    torch.testing.assert_close(model(x), reference(x))  # alpha = 0, no noise in eval


@pytest.mark.parametrize("method", ["qat", "noise-injection", "noisy-machines", "variance-aware"])
def test_baseline_methods_return_digital_models_that_learned(method: str) -> None:
    data = _data()
    fp32 = _mlp()
    settings = TrainSettings(epochs=1, finetune_epochs=2, finetune_lr=1e-2, batch_size=32)
    before = [p.clone() for p in fp32.parameters()]
    model = train_method(MethodSpec.parse(method), fp32, data, settings, PROFILE, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, fp32.parameters(), strict=True))
    assert all(type(m) in (nn.Sequential, nn.Flatten, nn.Linear, nn.ReLU) for m in model.modules())
    assert not torch.equal(model[1].weight, fp32[1].weight)


def test_physics_informed_trains_on_the_target_profile() -> None:
    data = _data()
    spec = MethodSpec.parse(
        {"method": "physics-informed", "options": {"weight_kl": 1e-3, "residual": True}}
    )
    settings = TrainSettings(epochs=10, finetune_epochs=3, lr=1e-2, finetune_lr=3e-3, batch_size=16)
    fp32 = train_fp32(_mlp(), data, settings, seed=0)
    model = train_method(spec, fp32, data, settings, PROFILE, seed=0)
    layers = analog_layers(model)
    assert len(layers) == 3 and all(layer.profile == PROFILE for layer in layers.values())
    model.eval()
    x, y = data
    assert (model(x).argmax(1) == y).float().mean() > 0.8


def test_method_spec_rejects_unknown_methods_and_options() -> None:
    with pytest.raises(ValueError, match="known methods"):
        MethodSpec.parse("dropout")
    with pytest.raises(ValueError, match="unknown options"):
        MethodSpec.parse({"method": "physics-informed", "options": {"kl": 1}})


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="epochs=3: unknown key; known keys: kind, name"):
        complete_config({"name": "x", "epochs": 3})
    with pytest.raises(ValueError, match="dataset"):
        complete_config({"name": "x", "dataset": "svhn"})
    with pytest.raises(ValueError, match="repeat"):
        complete_config({"name": "x", "methods": ["qat", "qat"]})


def test_pooled_std_equals_std_of_all_values() -> None:
    groups = [[0.9, 0.92, 0.88], [0.85, 0.87, 0.86]]
    means = [sum(g) / 3 for g in groups]
    stds = [float(torch.tensor(g).std()) for g in groups]
    mean, std = pooled(means, stds, 3)
    flat = torch.tensor(groups[0] + groups[1], dtype=torch.float64)
    assert mean == pytest.approx(float(flat.mean()))
    assert std == pytest.approx(float(flat.std()))


def test_noise_aware_norm_recalibrates_batchnorm_per_chip_and_restores_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x, y = _data(64)
    saved = {k: v.clone() for k, v in model[1].state_dict().items()}
    loader = [(x, y)]
    plain = evaluate(model, loader, 2, profile=PROFILE, seed=3)
    calibrated = evaluate(model, loader, 2, profile=PROFILE, seed=3, calibration=[x])
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, saved[key])  # the digital model is untouched
    assert plain.rows[1].accuracy_mean != calibrated.rows[1].accuracy_mean


TINY = {
    "name": "tiny",
    "dataset": "digits",
    "model": "demo-mlp",
    "train": {"epochs": 2, "finetune_epochs": 1, "batch_size": 128},
    "methods": ["fp32", "noise-injection"],
    "seeds": [0, 1],
    "eval": {"chips": 2, "bits": [4], "noise_scales": [0.0, 1.0], "times": [1.0]},
}


def test_study_resumes_without_recomputing_and_reports(tmp_path) -> None:
    config = complete_config(dict(TINY))
    first = run_study(config, tmp_path, show_progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    (tmp_path / "cells" / "noise-injection-seed1.json").unlink()
    second = run_study(config, tmp_path, show_progress=False)
    assert [r["rows"] for r in second] == [r["rows"] for r in first]  # deterministic rerun
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    changed = [name for name in stamps if after[name] != stamps[name]]
    assert changed == ["noise-injection-seed1.json"]
    markdown = write_report(config, second, tmp_path)
    assert "| noise-injection |" in markdown
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["rows"]) == 2 * (1 + 2)  # methods × (ideal + 2 noise scales)
    assert (tmp_path / "accuracy_vs_noise.png").stat().st_size > 1000


def test_study_command_runs_a_named_config(tmp_path, monkeypatch) -> None:
    import yaml

    (tmp_path / "experiments" / "robustness").mkdir(parents=True)
    config = {k: v for k, v in TINY.items() if k != "name"} | {"seeds": [0]}
    (tmp_path / "experiments" / "robustness" / "tiny.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["study", "tiny", "--out", "out"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.md").exists()
    missing = CliRunner().invoke(app, ["study", "nope"])
    assert isinstance(missing.exception, FileNotFoundError)
    known = str(missing.exception).split("known: ")[1].split(", ")
    assert "tiny" in known and "mnist-mlp" in known  # your own and the shipped studies


def test_cross_entropy_of_methods_is_plain_for_baselines() -> None:
    # noise injection trains on plain cross-entropy: its loss on clean eval equals F.cross_entropy
    model = noise_injection_convert(_mlp(), 0.05).eval()
    x, y = _data(8)
    assert float(F.cross_entropy(model(x), y)) == pytest.approx(
        float(F.cross_entropy(strip_baselines(model)(x), y))
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"schedule": "lineer"}, "schedule='lineer'"),
        ({"weight_kl": -1}, "weight_kl=-1"),
        ({"sparsity": float("nan")}, "sparsity=nan"),
        ({"quantize": "yes"}, "quantize='yes'"),
        ({"residual": 1}, "residual=1"),
    ],
)
def test_physics_informed_options_are_checked_before_anything_trains(options, match):
    with pytest.raises(ValueError, match=match):
        MethodSpec.parse({"method": "physics-informed", "options": options})


@pytest.mark.parametrize(
    ("options", "match"),
    [({"distill_weight": 1.5}, "distill_weight"), ({"temperature": 0}, "temperature")],
)
def test_baseline_options_are_checked_before_anything_trains(options, match):
    with pytest.raises(ValueError, match=match):
        MethodSpec.parse({"method": "noisy-machines", "options": options})


def test_rerunning_a_study_with_another_config_into_its_folder_is_refused(tmp_path) -> None:
    import subprocess
    import sys

    import yaml

    config = {k: v for k, v in TINY.items() if k != "name"} | {"seeds": [0]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert CliRunner().invoke(app, ["study", str(path), "--out", str(out)]).exit_code == 0
    before = (out / "report.md").read_text()
    config["train"] = {**config["train"], "epochs": 3}
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "analogtorch", "study", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "train.epochs" in done.stderr and "--overwrite" in done.stderr
    assert (out / "report.md").read_text() == before


def test_chip_bn_is_an_option_of_trained_methods_only_and_absent_unless_given() -> None:
    assert "chip_bn" not in MethodSpec.parse("physics-informed").options  # old cells keep keys
    spec = MethodSpec.parse({"method": "noisy-machines", "options": {"chip_bn": True}})
    assert spec.options["chip_bn"] is True
    for method in ("fp32", "noise-aware-norm"):
        with pytest.raises(ValueError, match="unknown options"):
            MethodSpec.parse({"method": method, "options": {"chip_bn": True}})
    with pytest.raises(ValueError, match="chip_bn"):
        MethodSpec.parse({"method": "qat", "options": {"chip_bn": 1}})


def test_chip_bn_hands_calibration_batches_to_the_chip_evaluation(tmp_path, monkeypatch) -> None:
    from analogtorch.train import robustness

    seen: dict[str, int | None] = {}
    real = robustness.evaluate

    def spy(model, loader, *args, calibration=None, label="", **kwargs):
        seen[label] = None if calibration is None else len(calibration)
        return real(model, loader, *args, label=label, **kwargs)  # demo-mlp has no BatchNorm

    monkeypatch.setattr(robustness, "evaluate", spy)
    methods = ["qat", {"label": "qat-bn", "method": "qat", "options": {"chip_bn": True}}]
    config = complete_config(dict(TINY) | {"methods": methods, "seeds": [0]})
    config["eval"]["calibration_batches"] = 3
    run_study(config, tmp_path, show_progress=False)
    assert seen == {"qat": None, "qat-bn": 3}


def test_a_cell_stopped_during_its_chip_evaluation_does_not_train_again(tmp_path, monkeypatch):
    """The CIFAR-10 cell trains for hours and scores chips for one more: a kill in between
    must cost the evaluation only."""
    from analogtorch.train import robustness

    config = complete_config(dict(TINY) | {"methods": ["noise-injection"], "seeds": [0]})
    real_evaluate = robustness.evaluate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(robustness, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        run_study(config, tmp_path / "a", show_progress=False)
    checkpoints = list((tmp_path / "a" / "models").glob("noise-injection-seed0-*.ckpt"))
    assert len(checkpoints) == 1
    stamp = checkpoints[0].stat().st_mtime_ns
    monkeypatch.setattr(robustness, "evaluate", real_evaluate)
    resumed = run_study(config, tmp_path / "a", show_progress=False)
    assert checkpoints[0].stat().st_mtime_ns == stamp  # resumed after its last epoch
    fresh = run_study(config, tmp_path / "b", show_progress=False)
    assert [r["rows"] for r in resumed] == [r["rows"] for r in fresh]


def test_entries_differing_only_in_label_or_evaluation_share_one_training(tmp_path, monkeypatch):
    from analogtorch.train import robustness

    existed = []
    real = robustness.train_method

    def spy(spec, fp32, data, settings, profile, seed, checkpoint):
        existed.append(checkpoint.exists())  # a finished training there: resumed, not redone
        return real(spec, fp32, data, settings, profile, seed, checkpoint)

    monkeypatch.setattr(robustness, "train_method", spy)
    methods = ["qat", {"label": "qat-again", "method": "qat"}]  # (chip_bn: the key test)
    config = complete_config(dict(TINY) | {"methods": methods, "seeds": [0]})
    records = run_study(config, tmp_path, show_progress=False)
    assert existed == [False, True]
    strip = [{k: v for k, v in row.items() if k != "model"} for r in records for row in r["rows"]]
    assert strip[: len(strip) // 2] == strip[len(strip) // 2 :]  # one model, same chips
    assert len(list((tmp_path / "models").glob("qat-seed0-*.ckpt"))) == 1


def test_the_training_key_follows_what_training_depends_on(tmp_path):
    from analogtorch.train.robustness import cell_checkpoint

    base = complete_config(dict(TINY))
    options = MethodSpec.parse("physics-informed").options
    method = {"label": "pi", "method": "physics-informed", "options": options}
    key = cell_checkpoint(base, method, 0, tmp_path)
    same = [
        base | {"description": "edited", "methods": ["fp32"], "chip_seed": 7},
        base | {"eval": base["eval"] | {"chips": 50, "noise_scales": [3.0]}},
    ]
    for config in same:
        assert cell_checkpoint(config, method, 0, tmp_path) == key
    assert cell_checkpoint(base, method | {"label": "other"}, 0, tmp_path) == key
    with_bn = method | {"options": options | {"chip_bn": True}}
    assert cell_checkpoint(base, with_bn, 0, tmp_path) == key
    other = [
        base | {"train": base["train"] | {"finetune_lr": 0.5}},
        base | {"profile_changes": {"prog_noise_std": 0.2}},
        base | {"n_train": 100},
    ]
    for config in other:
        assert cell_checkpoint(config, method, 0, tmp_path) != key
    assert cell_checkpoint(base, method, 1, tmp_path) != key
    changed = method | {"options": method["options"] | {"schedule": "constant"}}
    assert cell_checkpoint(base, changed, 0, tmp_path) != key
