"""Robustness studies from YAML configs (``experiments/robustness/*.yaml``), cell by cell.

A study trains each entry of ``methods`` (:mod:`.methods`; ablations are entries of one
method with different options) for every seed of ``seeds``, all from the seed's FP32
model, and scores each trained model on ``eval.chips`` programmed chips for every weight
precision of ``eval.bits``, noise scale of ``eval.noise_scales`` (multiplying every noise
amplitude of the profile; with the default profile the weight-noise std is
``0.10 · scale`` of the row's largest weight) and time since programming of
``eval.times``. The chips (seeds ``chip_seed + k``) are the same for every method and
seed, so methods are compared on identical hardware.

Each (method, seed) is one cell of :func:`~analogtorch.study_cells.run_cells`: finished
cells are kept on disk and an interrupted study resumes without recomputing them. The
FP32 model of a seed is trained once and cached under ``models/``; each trained method
keeps its last checkpoint there (``<label>-seed<seed>-<key>.ckpt``: model, optimizer and
history after its final epoch), so a cell stopped during its chip evaluation resumes after
its training, and the trained model stays available (e.g. to :func:`~analogtorch.save`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..demo import digits_splits
from ..devices import resolve_device
from ..files import exclusive
from ..hardware.chip import Chip
from ..hardware.profile import HardwareProfile
from ..models import MODELS, build_model
from ..nn.base import analog_layers
from ..nn.convert import convert
from ..runs import run_cells
from ..study_cells import read_config, slug, study_profile
from ..tasks import IMAGE_TASKS, TaskData
from ..tasks.images import image_classification
from .activations import activation_js
from .evaluate import accuracy, evaluate
from .methods import (
    EVAL_OPTIONS,
    MethodSpec,
    TrainSettings,
    fp32_reference,
    train_fp32,
    train_method,
)
from .model_cache import trained_once
from .physics_loss import weight_terms
from .study_config import validate_robustness


def complete_config(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check a robustness study config and fill in its defaults (:mod:`.study_config`): every
    key typed and range-checked, then the names (dataset, model, profile, methods) and the
    training settings resolved, all before anything trains."""
    config = validate_robustness(data, source)
    if config["dataset"] not in (*IMAGE_TASKS, "digits"):
        raise ValueError(
            f"{source}: dataset={config['dataset']!r}; use digits or one of {IMAGE_TASKS}"
        )
    if config["model"] not in MODELS:
        raise ValueError(f"{source}: model={config['model']!r}; use one of {sorted(MODELS)}")
    unknown_train = set(config["train"]) - {f.name for f in dataclasses.fields(TrainSettings)}
    if unknown_train:
        raise ValueError(f"{source}: unknown train keys {sorted(unknown_train)}")
    TrainSettings(**config["train"])  # values checked, each error naming its key
    profile = study_profile(config)  # the profile and its changes are valid
    specs = [MethodSpec.parse(m) for m in config["methods"]]
    for spec in specs:
        if spec.method == "physics-informed":
            try:
                weight_terms(spec.options, profile)
            except ValueError as err:
                raise ValueError(f"{source}: method {spec.label!r}: {err}") from None
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{source}: method labels {labels} repeat; give each a label")
    return config


def load_study(path: str | Path) -> dict[str, Any]:
    """Read a study YAML (``name`` defaults to the file name) and fill in the defaults."""
    return read_config(path, complete_config)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What every training of a study depends on: data, network and training settings."""
    return {key: config[key] for key in ("dataset", "model", "n_train", "train")}


def cached_model_path(config: dict[str, Any], kind: str, seed: int, out_dir: Path) -> Path:
    """Where the seed's model ``kind`` (``fp32``, ``fp32-reference``) is cached: a name that
    hashes everything it depends on, so a changed recipe trains a new model."""
    return out_dir / "models" / f"{kind}-seed{seed}-{_digest(_recipe(config), seed)}.pt"


def cell_checkpoint(
    config: dict[str, Any], method: dict[str, Any], seed: int, out_dir: Path
) -> Path:
    """The per-epoch checkpoint of a method's training (``method`` as in the params of
    :func:`study_cells`), named by a hash of what that training depends on: the recipe, the
    hardware profile, the method, its training options and the seed. Not its label, its
    evaluation options (``chip_bn``) or the study's evaluation grid: entries that differ
    only there share one training, and an evaluation-only change trains nothing again."""
    spec = MethodSpec.parse(method)
    options = {k: v for k, v in spec.options.items() if k not in EVAL_OPTIONS}
    profile = study_profile(config).fingerprint
    key = _digest(_recipe(config), profile, spec.method, options, seed)
    return out_dir / "models" / f"{spec.method}-seed{seed}-{key}.ckpt"


def _cached_model(
    config: dict[str, Any],
    kind: str,
    seed: int,
    out_dir: Path,
    train: Callable[..., None],
    device: str | torch.device,
) -> nn.Module:
    """The seed's model ``kind`` on ``device``, trained once by ``train(model, checkpoint)``
    and cached at :func:`cached_model_path`; ``checkpoint`` is a per-epoch file an
    interrupted run resumes from."""
    model, _ = build_model(config["model"], seed=seed)  # initialised on the CPU: same weights
    model = model.to(device)
    path = cached_model_path(config, kind, seed, out_dir)
    checkpoint = path.with_suffix(".ckpt")
    trained_once(model, path, lambda: train(model, checkpoint))
    checkpoint.unlink(missing_ok=True)  # the model file holds the training from here on
    return model.eval()


def fp32_models(
    config: dict[str, Any],
    data: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    seed: int,
    out_dir: Path,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, nn.Module]:
    """The seed's pre-trained FP32 model (every method starts from it) and the FP32
    reference of the same total budget (:func:`~.methods.fp32_reference`), both cached, on
    ``device``."""
    fp32 = _cached_model(
        config,
        "fp32",
        seed,
        out_dir,
        lambda m, ckpt: train_fp32(m, data, settings, seed, ckpt),
        device,
    )

    def finetune(model: nn.Module, checkpoint: Path) -> None:
        model.load_state_dict(fp32_reference(fp32, data, settings, seed, checkpoint).state_dict())

    return fp32, _cached_model(config, "fp32-reference", seed, out_dir, finetune, device)


def study_task(config: dict[str, Any], data_dir: Any = None) -> TaskData:
    """The study's data: an image task of :mod:`analogtorch.tasks` (per-channel normalised,
    (N, C, H, W)), or ``digits`` — scikit-learn's bundled 8x8 digits (the demo's data)."""
    if config["dataset"] == "digits":
        train, test = digits_splits(0, 0.2)
        return TaskData(
            "digits", "classification", train.images, train.labels, test.images, test.labels
        )
    return image_classification(
        config["dataset"],
        n_train=config["n_train"],
        n_test=config["n_test"],
        seed=0,
        data_dir=data_dir,
        flatten=False,
    )


JS_INPUTS = 1000  # test inputs the activation JS is measured on


def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 500):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def run_cell(
    config: dict[str, Any],
    method: dict[str, Any],
    seed: int,
    out_dir: Path,
    data_dir: Any,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train one method for one seed and score it on the study's chips, on ``device`` (the
    data goes there whole: batch order, augmentation and chip programming are still drawn
    on the CPU, so they are the same on every device)."""
    started = time.perf_counter()
    spec = MethodSpec.parse(method)
    on = resolve_device(device)
    task = study_task(config, data_dir).to(on)
    settings = TrainSettings(**config["train"])
    profile = study_profile(config)
    train = (task.x_train, task.y_train)
    fp32, reference = fp32_models(config, train, settings, seed, out_dir, on)
    if spec.method in ("fp32", "noise-aware-norm"):  # the reference itself, not trained again
        model = reference
    else:  # kept after training: a cell killed during its chip evaluation resumes after it
        checkpoint = cell_checkpoint(config, method, seed, out_dir)
        with exclusive(checkpoint):  # one training for entries that share it (Ray cells)
            model = train_method(spec, fp32, train, settings, profile, seed, checkpoint)
    test = _batches(task.x_test, task.y_test)
    ev = config["eval"]
    calibration = None
    if spec.method == "noise-aware-norm" or spec.options.get("chip_bn"):
        calibration = [x for x, _ in _batches(task.x_train, task.y_train, 256)]
        calibration = calibration[: ev["calibration_batches"]]
    rows = []
    scores = []  # chip scores kept while measured: a killed run resumes at the next chip
    for bits in ev["bits"]:
        scores.append(out_dir / "models" / f"{slug(spec.label)}-seed{seed}-{bits}bit-scores.json")
        report = evaluate(
            model,
            test,
            ev["chips"],
            ev["times"],
            profile=profile.replace(weight_bits=int(bits)),
            noise_scales=ev["noise_scales"],
            seed=config["chip_seed"],
            label=spec.label,
            calibration=calibration,
            cache=scores[-1],
        )
        rows += [{**row, "bits": int(bits)} for row in report.to_dicts()]
    record = {
        "fp32_accuracy": accuracy(reference, test),
        "rows": rows,
        "js_divergence": _calibration_js(config, model, profile, task.x_test, seed),
        "seconds": time.perf_counter() - started,
    }
    for path in scores:
        path.unlink(missing_ok=True)
    return record


def _calibration_js(
    config: dict[str, Any], model: nn.Module, profile: HardwareProfile, x: torch.Tensor, seed: int
) -> dict[str, Any]:
    """Seed 001's calibration metric (:mod:`.activations`): per analog layer, the JS between
    the simulator's and each chip's activations on the first ``JS_INPUTS`` test inputs, at
    the nominal setting (first ``eval.bits``, noise scale 1, first ``eval.times``) on the
    study's chips. A digital model is converted at that profile first; BatchNorm statistics
    are the model's own (no per-chip re-estimation, also for ``noise-aware-norm``)."""
    ev = config["eval"]
    nominal = profile.replace(weight_bits=int(ev["bits"][0]))
    if not analog_layers(model):
        model = convert(model, nominal)
    chips = [Chip(nominal, config["chip_seed"] + k) for k in range(ev["chips"])]
    inputs = list(x[:JS_INPUTS].split(500))
    layers = activation_js(model, inputs, chips, ev["times"][0], seed=seed)
    return {
        "bits": int(ev["bits"][0]),
        "noise_scale": 1.0,
        "time_s": ev["times"][0],
        "inputs": len(x[:JS_INPUTS]),
        "layers": layers,
    }


def run_study(
    config: dict[str, Any],
    out_dir: str | Path,
    *,
    data_dir: Any = None,
    backend: str = "local",
    show_progress: bool = True,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Run every missing cell of ``config`` into ``out_dir`` on ``device`` (:func:`run_cell`);
    returns all cell records."""
    out_dir = Path(out_dir)
    resolve_device(device)  # refused here, before any cell starts

    def run(params: dict[str, Any]) -> dict[str, Any]:
        return run_cell(config, params["method"], params["seed"], out_dir, data_dir, device)

    return run_cells(
        study_cells(config),
        run,
        out_dir,
        backend=backend,
        label=config["name"],
        show_progress=show_progress,
    )


def study_cells(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(key, params)`` of every (method, seed) cell; a finished cell is reused only while
    its stored params (label, method, resolved options, seed) are these."""
    cells = []
    for entry in config["methods"]:
        spec = MethodSpec.parse(entry)
        for seed in config["seeds"]:
            params = {
                "method": {"label": spec.label, "method": spec.method, "options": spec.options},
                "seed": int(seed),
            }
            cells.append((slug(f"{spec.label}-seed{seed}"), params))
    return cells
