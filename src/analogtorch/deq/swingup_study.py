"""``kind: swingup`` DEQ studies: pendulum swing-up controllers trained by DAgger.

Cells: the smooth expert (``tasks/swingup.py``) once; per seed a ``digital DEQ`` (trained and
run on the ideal profile) and a ``hybrid`` DEQ (physics-aware: the curriculum in the first
round, the full profile after it; each DAgger round rolled out on a fresh training chip, so
the aggregate holds the states programmed chips visit). Each is scored in closed loop
(:func:`~analogtorch.tasks.closed_loop`: success = |θ − π| < 0.2 rad and |θ̇| < 1 rad/s at
every step of the last 20 % of 15 s) from two fixed start sets of ``eval.starts`` states
(hanging and uniform, seeded apart from training); the hybrid on ``eval.chips`` programmed
chips at ``eval.time_s`` (seeds ``1000 · seed + k``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..files import write_atomic, write_json
from ..hardware.chip import Chip
from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from ..runs import run_cells
from ..study_cells import study_profile
from ..tasks import make_task
from ..tasks.pendulum import Policy, closed_loop
from ..tasks.swingup import (
    START_SETS,
    SWINGUP_DT,
    SWINGUP_STEPS,
    Fit,
    SmoothSwingUp,
    dagger,
    saturated_torque_loss,
    swingup_starts,
)
from ..train.schedules import Curriculum, CurriculumProfiles, epoch_stages
from ..train.trainer import Trainer, epoch_batches
from .hybrid import HybridDEQ
from .study import build_study_model
from .swingup_report import summarise_swingup
from .training import ProjectContractive

ARMS = ("digital DEQ", "hybrid")
EVAL_STARTS_SEED = 20_261_207  # the fixed start sets, apart from every training seed


def start_sets(count: int) -> dict[str, torch.Tensor]:
    """The fixed closed-loop start sets (``count`` states each), the same for every run."""
    gen = torch.Generator().manual_seed(EVAL_STARTS_SEED)
    return {kind: swingup_starts(count, kind, gen) for kind in START_SETS}


def score(policy: Policy, expert: SmoothSwingUp, starts: dict[str, torch.Tensor]) -> dict:
    """Closed-loop success rate and mean cost from each start set."""
    record = {}
    for kind, x0 in starts.items():
        result = closed_loop(policy, expert.params, x0, SWINGUP_STEPS, SWINGUP_DT)
        record[kind] = {"success": result["success_rate"], "cost": result["cost"]}
    return record


def _policy(model: HybridDEQ) -> Policy:
    return lambda obs: model(obs).squeeze(-1)


def _fit(
    config: dict[str, Any],
    model: HybridDEQ,
    profile: HardwareProfile,
    aware: bool,
    max_torque: float,
    seed: int,
) -> Fit:
    """``fit(x, v, k)`` for :func:`dagger`: Adam on :func:`saturated_torque_loss`, projecting
    the core after every step, on ``profile`` (physics-aware: through the curriculum in
    round 0) or on the ideal profile."""
    t = config["train"]
    train_profile = profile if aware else HardwareProfile.preset("ideal")

    def loss(m: HybridDEQ, x: torch.Tensor, v: torch.Tensor):
        value = saturated_torque_loss(m(x), v, max_torque)
        return value, {"task": float(value.detach())}

    def fit(x: torch.Tensor, v: torch.Tensor, k: int) -> None:
        epochs = t["epochs"] if k == 0 else t["dagger"]["epochs_per_round"]
        callbacks: list[object] = [ProjectContractive()]
        if aware and config["curriculum"] and k == 0:
            steps = math.ceil(len(x) / t["batch_size"])
            curriculum = Curriculum(epoch_stages(epochs, steps))
            callbacks.append(CurriculumProfiles(curriculum, profile, steps))
        model.set_profile(train_profile)
        round_seed = derive_seed(seed, "dagger", k)
        Trainer(
            model,
            loss,
            torch.optim.Adam(model.parameters(), lr=t["lr"]),
            epochs=epochs,
            callbacks=callbacks,
            seed=round_seed,
            max_grad_norm=10.0,
        ).fit(epoch_batches(x, v, t["batch_size"], round_seed))
        model.set_profile(train_profile)  # the curriculum leaves its last stage's profile

    return fit


def _cell(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    d, e = config["train"]["dagger"], config["eval"]
    expert = SmoothSwingUp(energy_gain=d["energy_gain"], catch_width=d["catch_width"])
    starts = start_sets(e["starts"])
    arm, seed = params["arm"], params["seed"]
    if arm == "expert":
        return score(expert, expert, starts)
    base = study_profile(config)
    task = make_task("pendulum", n_train=1, n_test=1, seed=seed)  # shapes and constants
    model = build_study_model(config, task, base, seed)
    aware = arm == "hybrid"

    @contextlib.contextmanager
    def rollout(k: int) -> Iterator[Policy]:
        model.eval()
        chip = Chip(base, derive_seed(seed, "dagger chip", k)) if aware else None
        with chip.deploy(model, time_s=e["time_s"]) if chip else contextlib.nullcontext():
            yield _policy(model)

    _, rounds = dagger(
        _fit(config, model, base, aware, expert.params.max_torque, seed),
        rollout,
        expert,
        rounds=d["rounds"],
        rollouts=d["rollouts"],
        samples=d["samples"],
        seed=derive_seed(seed, "dagger data"),
    )
    record: dict[str, Any] = {"rounds": [asdict(r) for r in rounds]}
    model.eval()
    if not aware:
        return {**record, **score(_policy(model), expert, starts)}
    record["chips"] = []
    for k in range(e["chips"]):
        with Chip(base, 1000 * seed + k).deploy(model, time_s=e["time_s"]):
            record["chips"].append(score(_policy(model), expert, starts))
    return record


def run_swingup_study(
    config: dict[str, Any], out_dir: Path, *, backend: str = "local", show_progress: bool = False
) -> str:
    """Run (or resume) a swing-up study; writes ``cells/``, ``summary.json``, ``report.md``
    and the plot."""
    cells = [("expert", {"arm": "expert", "seed": 0})] + [
        (f"{arm.replace(' ', '_')}-seed{seed}", {"arm": arm, "seed": seed})
        for seed in config["seeds"]
        for arm in ARMS
    ]
    records = run_cells(
        cells,
        lambda params: _cell(config, params),
        out_dir,
        backend=backend,
        label=config["name"],
        show_progress=show_progress,
    )
    summary = summarise_swingup(config, records, out_dir)
    write_json(out_dir / "summary.json", {"config": config, "cells": records})
    write_atomic(out_dir / "report.md", summary)
    return summary
