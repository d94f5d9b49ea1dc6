"""DEQ studies from YAML configs (``experiments/deq/*.yaml``), resumable cell by cell.

``kind: classification`` — a hybrid DEQ on an image task, two training arms:

* ``physics-aware``: trained on the hardware profile of each setting, through the
  curriculum (digital → noise → precision → full) with the configured regularisers;
* ``standard``: the same architecture trained digitally (ideal core, no converters), then
  run on the hardware of each setting;
* ``relaxation`` (optional): as ``physics-aware``, with ``forward="relaxation"``: the core
  settles by the circuit ODE in training and on the chips, and the cell also reports the
  per-sample settling time (s) and energy (J) on chips;
* ``explicit`` (optional): the DEQ's explicit twin (``explicit.py``: the same encoder, core
  and head, the core applied once to the encoder's state), trained as ``physics-aware``;
  with it, each trained model is also scored with the equilibrium swapped (a DEQ run
  explicitly and without feedback, an explicit twin run to its fixed point).

* ``hil`` (optional, with ``train.hil``): the curriculum's last stage, the ``physics-aware``
  model (the same checkpoint) fine-tuned hardware-in-the-loop on each VirtualChip of
  ``train.hil.chips`` and scored on that chip next to no fine-tuning and the I/O twin
  (``hil_arm.py``).

``model.encoder`` (optional) swaps the flat linear injection for a digital conv encoder
(``conv_encoder.py``) on image tasks.

Settings vary the precision (weight/DAC/ADC bits) and the weight noise σ (programming noise
std, fraction of g_max). Each cell reports error on ``chips`` programmed chips at ``time_s``
(mean ± std), solver iterations, the ADC SNR in dB and, for the first setting, the analog
relaxation (settling time in seconds, agreement with the solver) and the energy per
inference (iterative solve vs relaxation, and the same weights as a digital DEQ solved one
input at a time on the digital baselines: ``digital_cost.py``).

``kind: physics`` — per task of ``tasks``: the hybrid DEQ (physics-aware, on chips), the
same DEQ run digitally (ideal profile, trained digitally), and an explicit network with the
same parameter count (``in → w → w → out``, tanh), trained by the same loop. With
``kinds``, one physics-aware hybrid per core kind (plain / pi / cc) on chips instead, with the
equation residual where the task has a governing equation; an image task there (its files
read from ``data_dir``) compares the cores that need no physics prior (plain, cc).

``kind: swingup`` — pendulum swing-up controllers trained by DAgger (``swingup_study.py``).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..energy import estimate
from ..energy.dynamics import estimate_dynamics
from ..files import exclusive, write_atomic, write_json
from ..hardware.chip import Chip
from ..hardware.profile import HardwareProfile
from ..nn.quantized import QuantizedLinear
from ..runs import run_cells
from ..study_cells import read_config, study_profile
from ..tasks import IMAGE_TASKS, TASKS, PendulumParams, TaskData, closed_loop, make_task
from ..train.lr_schedule import CosineSchedule
from ..train.model_cache import trained_once
from ..train.schedules import Curriculum, CurriculumProfiles, epoch_stages
from ..train.trainer import Trainer, epoch_batches
from .conv_encoder import conv_encoder
from .digital_cost import digital_deq_cost
from .explicit import ExplicitHybrid
from .hil_arm import hil_arm
from .hybrid import CORE_KINDS, ForwardMode, HybridDEQ, build_hybrid_deq
from .options import SolverOptions
from .physics import PHYSICS, equation_residual, make_physics
from .regularizers import RegularizerWeights
from .relaxation import RelaxationOptions, relax
from .study_config import validate_deq
from .study_report import summarise
from .training import (
    DEQLoss,
    evaluate_hybrid,
    predict,
    relaxation_summary,
    task_error,
    task_loss,
    train_hybrid,
)


def complete_config(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check a DEQ study config (:mod:`.study_config`: every key typed and range-checked)
    and fill in its defaults; then the names it uses (task, tasks, profile) resolved."""
    config = validate_deq(data, source)
    if config["kind"] == "classification" and config["task"] is None:
        raise ValueError(f"{source}: a classification study needs task: (mnist, ...)")
    if config["kind"] == "physics" and not config["tasks"]:
        raise ValueError(f"{source}: a physics study needs tasks: [linear, heat, ...]")
    unset = "dagger" not in config["train"] or "starts" not in config["eval"]
    if config["kind"] == "swingup" and unset:
        raise ValueError(f"{source}: a swingup study needs train.dagger: {{...}} and eval.starts")
    unknown = [t for t in [config["task"], *config["tasks"]] if t is not None and t not in TASKS]
    if unknown:
        raise ValueError(f"{source}: unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    study_profile(config)  # the profile and its changes are valid
    if ("hil" in config["arms"]) != ("hil" in config["train"]):
        raise ValueError(f"{source}: the arm hil and train.hil: {{...}} go together")
    if "hil" in config["arms"] and config["kind"] != "classification":
        raise ValueError(f"{source}: the arm hil applies to kind: classification only")
    if config["kinds"] and config["kind"] != "physics":
        raise ValueError(f"{source}: kinds: {config['kinds']} applies to kind: physics only")
    if "pi" in [config["model"]["kind"], *config["kinds"]]:
        for task in [config["task"], *config["tasks"]]:
            if task is not None:
                physics_name(config, task)
    return config


def physics_name(config: dict[str, Any], task: str) -> str:
    """The PI-DEQ physics term of ``task``: ``model.physics``, or the task's own name."""
    name = config["model"]["physics"] or task
    if name not in PHYSICS:
        raise ValueError(
            f"model.physics={name!r} (task {task!r}): unknown physics; known: "
            f"{', '.join(sorted(PHYSICS))}"
        )
    return name


def load_study(path: str | Path) -> dict[str, Any]:
    """Read a study YAML (``name`` defaults to the file name) and fill in the defaults."""
    return read_config(path, complete_config)


def setting_profile(base: HardwareProfile, setting: dict[str, Any]) -> HardwareProfile:
    """``base`` with ``bits`` (weights, DAC, ADC) and weight noise ``noise`` (σ / g_max)."""
    profile = base
    if setting.get("bits") is not None:
        b = int(setting["bits"])
        profile = profile.replace(weight_bits=b, dac_bits=b, adc_bits=b)
    if setting.get("noise") is not None:
        profile = profile.replace(prog_noise_poly=(), prog_noise_std=float(setting["noise"]))
    return profile


def build_study_model(
    config: dict[str, Any],
    task: TaskData,
    profile: HardwareProfile,
    seed: int,
    forward: ForwardMode = "solver",
    kind: str | None = None,
) -> HybridDEQ:
    """The untrained hybrid DEQ of a study's ``model`` section for ``task`` (core ``kind``,
    default the config's; ``forward``: solver or relaxation)."""
    m = config["model"]
    kind = kind or m["kind"]
    options = SolverOptions(tol=m["tol"], max_iter=m["max_iter"], mode="relative")
    relaxation = _relaxation_options(config) if forward == "relaxation" else None
    physics = None
    if kind == "pi":
        name = physics_name(config, task.name)
        physics = make_physics(name, task.info, m["width"], m["coupling"])
    encoder = None
    if m.get("encoder") is not None:
        encoder = conv_encoder(
            task.info["image_shape"],
            m["width"],
            channels=m["encoder"]["channels"],
            kernel_size=m["encoder"]["kernel_size"],
            digital_bits=m["digital_bits"],
            seed=seed,
        )
    return build_hybrid_deq(
        task.in_features,
        task.out_features,
        profile,
        width=m["width"],
        kind=kind,
        physics=physics,
        activation=m["activation"],
        digital_bits=m["digital_bits"],
        contraction=m["contraction"],
        solver=m["solver"],
        forward_options=options,
        backward=m["backward"],
        forward=forward,
        relaxation=relaxation,
        encoder=encoder,
        seed=seed,
    )


def _relaxation_options(config: dict[str, Any]) -> RelaxationOptions:
    m = config["model"]
    return RelaxationOptions(m["steps_per_tau"], m["max_tau"])


def _train(
    config: dict[str, Any],
    model: HybridDEQ,
    task: TaskData,
    profile: HardwareProfile,
    physics_aware: bool,
    seed: int,
    checkpoint: Path,
) -> None:
    t = config["train"]
    callbacks = []
    steps = math.ceil(len(task.x_train) / t["batch_size"])
    if physics_aware and config["curriculum"]:
        curriculum = Curriculum(epoch_stages(t["epochs"], steps))
        callbacks.append(CurriculumProfiles(curriculum, profile, steps))
    if t.get("schedule") == "cosine":
        callbacks.append(CosineSchedule(t["lr"], t["epochs"], steps))
    weights = RegularizerWeights(**config["regularizers"]) if physics_aware else None
    model.set_profile(profile if physics_aware else HardwareProfile.preset("ideal"))
    with exclusive(checkpoint):  # the hil arm starts from the physics-aware model: one of
        # the two cells trains it, the other waits and resumes from its last checkpoint
        train_hybrid(
            model,
            task.x_train,
            task.y_train,
            task.kind,
            epochs=t["epochs"],
            lr=t["lr"],
            batch_size=t["batch_size"],
            loss=DEQLoss(task.kind, weights),
            callbacks=callbacks,
            checkpoint=checkpoint,
            seed=seed,
            label=checkpoint.stem,
        )
    model.set_profile(profile)


def _relaxation(
    config: dict[str, Any], model: HybridDEQ, task: TaskData, profile: HardwareProfile
) -> dict[str, Any]:
    """Analog relaxation vs the digital solver on the same weights and chip (chip 0)."""
    x = task.x_test[:256]
    options = SolverOptions(tol=1e-3, mode="relative")
    r = _relaxation_options(config)
    with Chip(profile, 0).deploy(model, time_s=0.0), torch.no_grad():
        u = model.injection(x)
        z_solver = model.deq(u)
        iterations = model.last_forward_stats.iterations
        z_relax, stats = relax(
            model.core, u, options=options, steps_per_tau=r.steps_per_tau, max_tau=r.max_tau
        )
        out_relax = model.head(model.adc(z_relax))
        out_solver = model.head(model.adc(z_solver))
    # The iterative solve's energy: the crossbar read through its converters per iteration.
    report = estimate(model.with_forward("solver"), profile, inputs=x[:64], baselines=())
    dynamics = estimate_dynamics(
        model.core.feedback.weight.detach(),
        profile,
        max(stats.settling_time_s if stats.settled else stats.duration_s, stats.dt_s),
        digital_steps=iterations,
        baselines=(),
    )
    digital_core = sum(c.total_energy_j for c in report.layers if c.name.endswith("feedback"))
    return {
        "settling_time_s": stats.duration_s,
        "relaxation_reason": stats.reason,
        "tau_s": stats.tau_s,
        "solver_iterations": iterations,
        "state_difference": float((z_relax - z_solver).norm() / z_solver.norm()),
        "error_relaxation": task_error(task.kind, out_relax, task.y_test[:256]),
        "error_solver": task_error(task.kind, out_solver, task.y_test[:256]),
        "energy_iterative_j": report.energy_j,
        "energy_core_iterative_j": digital_core,
        "energy_core_relaxation_j": dynamics.energy_j,
        "per_sample": relaxation_summary([stats]),
        "digital_deq": digital_deq_cost(model, x[:64], options=options),
    }


def _on_chips(config: dict[str, Any], model: HybridDEQ, task: TaskData, seed: int) -> dict:
    """Test error etc. on ``eval.chips`` chips (seeds ``1000 · seed + k``) at ``eval.time_s``."""
    e = config["eval"]
    return evaluate_hybrid(
        model,
        task.x_test,
        task.y_test,
        task.kind,
        n_chips=e["chips"],
        time_s=e["time_s"],
        seed=1000 * seed,
    )


def _classification_cell(config: dict[str, Any], out_dir: Path, task: TaskData):
    base = study_profile(config)

    def run(params: dict[str, Any]) -> dict[str, Any]:
        setting = next(s for s in config["settings"] if s["name"] == params["setting"])
        profile = setting_profile(base, setting)
        seed, arm = params["seed"], params["arm"]
        models = out_dir / "models"
        model = build_study_model(
            config, task, profile, seed, "relaxation" if arm == "relaxation" else "solver"
        )
        if arm == "standard":  # one digital training per seed, shared by all settings
            trained_once(
                model,
                models / f"standard-seed{seed}.pt",
                lambda: _train(
                    config, model, task, profile, False, seed, models / f"ckpt-std{seed}.pt"
                ),
            )
            model.set_profile(profile)
        else:
            if arm == "explicit":
                model = ExplicitHybrid.from_hybrid(model)
            trained = "physics-aware" if arm == "hil" else arm  # hil tunes that model further
            _train(
                config,
                model,
                task,
                profile,
                True,
                seed,
                models / f"ckpt-{trained}-{params['setting']}-{seed}.pt",
            )
        if arm == "hil":
            t = config["train"]
            return {
                "task_kind": task.kind,
                "hil": hil_arm(t["hil"], model, task, t["batch_size"], seed),
            }
        record = {"task_kind": task.kind, **_on_chips(config, model, task, seed)}
        if "explicit" in config["arms"] and arm in ("physics-aware", "explicit"):
            record.update(_feedback_ablation(config, model, task, profile, seed))
        first = params["setting"] == config["settings"][0]["name"]
        if config["relaxation"] and first and arm != "explicit":
            record["relaxation"] = _relaxation(config, model, task, profile)
        return record

    return run


def _feedback_ablation(
    config: dict[str, Any], model: HybridDEQ, task: TaskData, profile: HardwareProfile, seed: int
) -> dict[str, dict]:
    """The trained weights scored on the same chips with the equilibrium swapped: a DEQ run
    as its explicit twin (``as_explicit``) and with no feedback at all (``no_feedback``: one
    step from rest, ``σ(u)``); an explicit twin run to its fixed point (``as_deq``)."""
    if isinstance(model, ExplicitHybrid):
        deq = build_study_model(config, task, profile, seed)
        deq.load_state_dict(model.state_dict())
        return {"as_deq": _on_chips(config, deq, task, seed)}
    return {
        "as_explicit": _on_chips(config, ExplicitHybrid.from_hybrid(model), task, seed),
        "no_feedback": _on_chips(config, ExplicitHybrid.from_hybrid(model, 1), task, seed),
    }


def _explicit_net(task: TaskData, width: int, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Flatten(),
            QuantizedLinear(task.in_features, width, weight_bits=None),
            nn.Tanh(),
            QuantizedLinear(width, width, weight_bits=None),
            nn.Tanh(),
            QuantizedLinear(width, task.out_features, weight_bits=None),
        )


def _closed_loop(policy: nn.Module, task: TaskData, seed: int) -> dict[str, float]:
    """Pendulum swing-up by ``policy`` from 32 starts near hanging (θ ~ N(0, 0.1²) rad,
    θ̇ ~ N(0, 0.1²) rad/s), 15 s at 50 Hz: success rate and mean cost."""
    params = PendulumParams(**task.info["params"])
    gen = torch.Generator().manual_seed(seed)
    x0 = 0.1 * torch.randn(32, 2, generator=gen, dtype=torch.float64)
    policy.eval()
    result = closed_loop(lambda obs: policy(obs).squeeze(-1), params, x0, 750, task.info["dt"])
    return {
        "swing_up_success": float(result["success_rate"]),
        "swing_up_cost": float(result["cost"]),
    }


def _core_kind_cell(
    config: dict[str, Any],
    task: TaskData,
    profile: HardwareProfile,
    seed: int,
    kind: str,
    checkpoint: Path,
) -> dict[str, Any]:
    """A physics-aware hybrid DEQ with core ``kind`` on chips: error and, for tasks with a
    governing equation in :data:`PHYSICS`, its residual on the predicted states
    (:func:`equation_residual`), mean and std over the same chips."""
    model = build_study_model(config, task, profile, seed, kind=kind)
    _train(config, model, task, profile, True, seed, checkpoint)
    record = {"task_kind": task.kind, **_on_chips(config, model, task, seed)}
    if task.name not in PHYSICS:
        return record
    e = config["eval"]
    residuals = []
    for k in range(e["chips"]):
        with Chip(profile, 1000 * seed + k).deploy(model, time_s=e["time_s"]):
            out, _ = predict(model, task.x_test)
        residuals.append(equation_residual(task.name, task.info, task.x_test, out))
    record["residual"] = statistics.fmean(residuals)
    record["residual_std"] = statistics.stdev(residuals) if len(residuals) > 1 else 0.0
    record["residual_exact"] = equation_residual(task.name, task.info, task.x_test, task.y_test)
    return record


def _physics_cell(config: dict[str, Any], out_dir: Path, data_dir: str | None):
    base = study_profile(config)

    def run(params: dict[str, Any]) -> dict[str, Any]:
        sizes = {k: config[k] for k in ("n_train", "n_test") if config[k] is not None}
        if params["task"] in IMAGE_TASKS:  # an image task here: a core-kind comparison
            sizes["data_dir"] = data_dir
        options = config.get("task_options", {})
        task = make_task(params["task"], seed=params["seed"], **sizes, **options)
        seed, arm = params["seed"], params["arm"]
        ckpt = out_dir / "models" / f"ckpt-{params['task']}-{arm.replace(' ', '_')}-{seed}.pt"
        e = config["eval"]
        pendulum = params["task"] == "pendulum"
        if arm in CORE_KINDS:
            return _core_kind_cell(config, task, base, seed, arm, ckpt)
        if arm == "explicit":
            net = _explicit_net(task, config["model"]["width"], seed)
            t = config["train"]
            Trainer(
                net,
                lambda m, x, y: (task_loss(task.kind, m(x), y), {}),
                torch.optim.Adam(net.parameters(), lr=t["lr"]),
                epochs=t["epochs"],
                checkpoint=ckpt,
                seed=seed,
            ).fit(epoch_batches(task.x_train, task.y_train, t["batch_size"], seed))
            out, _ = predict(net, task.x_test)
            record = {"error": task_error(task.kind, out, task.y_test), "error_std": 0.0}
            return {**record, **(_closed_loop(net, task, seed) if pendulum else {})}
        model = build_study_model(config, task, base, seed)
        _train(config, model, task, base, arm == "hybrid", seed, ckpt)
        if arm == "digital DEQ":
            model.set_profile(HardwareProfile.preset("ideal"))
            out, iterations = predict(model, task.x_test)
            record = {
                "error": task_error(task.kind, out, task.y_test),
                "error_std": 0.0,
                "iterations": iterations,
            }
            return {**record, **(_closed_loop(model, task, seed) if pendulum else {})}
        record = _on_chips(config, model, task, seed)
        if pendulum:
            with Chip(base, 1000 * seed).deploy(model, time_s=e["time_s"]):
                record.update(_closed_loop(model, task, seed))
        return record

    return run


def run_deq_study(
    config: dict[str, Any],
    out_dir: str | Path,
    *,
    data_dir: str | None = None,
    backend: str = "local",
    show_progress: bool = False,
) -> str:
    """Run (or resume) a study; writes ``cells/``, ``summary.json``, ``report.md`` and plots."""
    out_dir = Path(out_dir)
    if config["kind"] == "swingup":
        from .swingup_study import run_swingup_study  # it builds on this module's helpers

        return run_swingup_study(config, out_dir, backend=backend, show_progress=show_progress)
    name = config["name"]
    if config["kind"] == "classification":
        extra = {"data_dir": data_dir} if config["task"] in IMAGE_TASKS else {}
        extra.update(config.get("task_options", {}))
        task = make_task(
            config["task"], n_train=config["n_train"], n_test=config["n_test"], **extra
        )
        cells = [
            (f"{arm}-{s['name']}-seed{seed}", {"arm": arm, "setting": s["name"], "seed": seed})
            for seed in config["seeds"]
            for s in config["settings"]
            for arm in config["arms"]
        ]
        run = _classification_cell(config, out_dir, task)
    else:
        arms = config["kinds"] or ("hybrid", "digital DEQ", "explicit")
        cells = [
            (f"{t}-{arm.replace(' ', '_')}-seed{seed}", {"task": t, "arm": arm, "seed": seed})
            for t in config["tasks"]
            for arm in arms
            for seed in config["seeds"]
        ]
        run = _physics_cell(config, out_dir, data_dir)
    records = run_cells(
        cells, run, out_dir, backend=backend, label=name, show_progress=show_progress
    )
    summary = summarise(config, records, out_dir)
    write_json(out_dir / "summary.json", {"config": config, "cells": records})
    write_atomic(out_dir / "report.md", summary)
    return summary
