"""`export_cell_model`: the trained model of a robustness-study cell as one shippable file
(:func:`analogtorch.save`), rebuilt from what the study keeps under ``models/``.

The model is rebuilt by the study's own code path
(:func:`~analogtorch.train.methods.train_method` from the kept checkpoint, which resumes
after its last epoch and trains nothing), so the file holds
exactly the model the study scored. A digital model (the FP32 reference, a baseline, whose
trained weights are what gets programmed) is converted with the study's profile at its
first ``eval.bits``. A normalised image task is wrapped in
:class:`~analogtorch.models.normalize.NormalizedInput`, so the file takes images in [0, 1]
as :func:`analogtorch.data.load_dataset` returns them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.normalize import NormalizedInput
from ..nn.base import analog_layers
from ..nn.convert import convert
from ..runs import cell_path
from ..saving import save
from ..study_cells import study_profile
from ..train.methods import MethodSpec, TrainSettings, train_method
from ..train.robustness import (
    cached_model_path,
    cell_checkpoint,
    fp32_models,
    study_cells,
    study_task,
)


def _cell(config: dict[str, Any], label: str, seed: int) -> tuple[str, dict[str, Any]]:
    cells = study_cells(config)
    for key, params in cells:
        if params["method"]["label"] == label and params["seed"] == seed:
            return key, params
    labels = sorted({p["method"]["label"] for _, p in cells})
    raise ValueError(
        f"study {config['name']} has no cell method={label!r} seed={seed}: methods "
        f"{labels}, seeds {config['seeds']}"
    )


def _finished_checkpoint(path: Path, epochs: int, what: str) -> None:
    """Refuse a missing or unfinished checkpoint (``train_method`` would train on)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {what} has not been trained in this run")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "steps_done" in state or state["epoch"] + 1 < epochs:
        raise ValueError(
            f"{what} is still training ({path} holds epoch {state['epoch'] + 1} of {epochs}): "
            "finish the study first"
        )


def export_cell_model(
    config: dict[str, Any],
    run_dir: str | Path,
    label: str,
    seed: int,
    path: str | Path,
    *,
    data_dir: Any = None,
) -> nn.Module:
    """Write the trained model of cell (``label``, ``seed``) of the study ``config`` run in
    ``run_dir`` to ``path`` with :func:`analogtorch.save` (arch, profiles, learned ranges
    and, as metadata, the study, the method, the seed and the cell's chip rows when the
    cell is finished); returns the analog model written."""
    run_dir = Path(run_dir)
    key, params = _cell(config, label, seed)
    spec = MethodSpec.parse(params["method"])
    settings = TrainSettings(**config["train"])
    what = f"cell {key}"
    for kind in ("fp32", "fp32-reference"):  # loaded, never trained here
        cached = cached_model_path(config, kind, seed, run_dir)
        if not cached.exists():
            raise FileNotFoundError(f"{cached} does not exist: {what} has not been trained")
    checkpoint = cell_checkpoint(config, params["method"], seed, run_dir)
    trained = spec.method not in ("fp32", "noise-aware-norm")  # else the FP32 reference
    if trained:
        _finished_checkpoint(checkpoint, settings.finetune_epochs, what)
    task = study_task(config, data_dir)
    train = (task.x_train, task.y_train)
    profile = study_profile(config)
    fp32, model = fp32_models(config, train, settings, seed, run_dir)
    if trained:
        model = train_method(spec, fp32, train, settings, profile, seed, checkpoint)
    if not analog_layers(model):
        model = convert(model, profile.replace(weight_bits=int(config["eval"]["bits"][0])))
    if "mean" in task.info:
        model = NormalizedInput(model, task.info["mean"], task.info["std"])
    record = cell_path(run_dir, key)
    rows = json.loads(record.read_text())["rows"] if record.exists() else None
    metadata = {"study": config["name"], "method": label, "seed": seed, "rows": rows}
    save(model.eval(), path, arch=config["model"], metadata=metadata)
    return model.eval()
