"""The HIL study: surrogate-only vs hardware-in-the-loop vs I/O-twin vs calibrated
physical-surrogate training.

For every training seed, an MLP is trained digitally and then hardware-aware on the user's
surrogate profile (``surrogate-only``). For every (seed, chip) cell, with a
:class:`VirtualChip` device instance as the hardware:

* ``surrogate-only``: that model, evaluated on the chip;
* ``HIL``: fine-tuned with :func:`hil_train` (forward on the chip, backward through the
  twin, periodic twin re-fits), evaluated on the chip;
* ``I/O twin``: fine-tuned through a twin fitted once on chip input/output pairs
  (:func:`twin_train`), evaluated on the chip;
* ``calibrated physical surrogate`` (when the config has ``calibrate``): fine-tuned
  hardware-aware on a profile calibrated on the chip's measurements and recalibrated every
  ``calibrate.refresh_every`` steps (:func:`calibrated_train`), evaluated on the chip.

Each finished cell is written to ``cells/seed<s>-chip<c>.json`` at once; a rerun skips
finished cells (resume after interruption). The summary is mean ± std over all cells.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..data import Split, load_dataset, make_loader
from ..figures import pyplot, save_figure
from ..files import write_atomic, write_json
from ..hardware.calibrate import CalibrationResult, Estimate
from ..hardware.profile import HardwareProfile
from ..models import build_mlp
from ..nn.convert import convert
from ..runs import run_cells
from ..train.evaluate import accuracy
from ..train.fit import fit
from ..train.model_cache import trained_once
from .chip_measurements import MeasurementPlan
from .train import CalibratedResult, calibrated_train, evaluate_on_backend, hil_train, twin_train
from .virtual_chip import VirtualChip

CALIBRATED = "calibrated physical surrogate"
METHODS = ("surrogate-only", "HIL", "I/O twin", CALIBRATED)


def _methods(config: dict) -> tuple[str, ...]:
    """The arms a config runs (the calibrated one only with a ``calibrate`` section)."""
    return METHODS if config.get("calibrate") else METHODS[:3]


def _subset(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n])


def _surrogate_model(config: dict, seed: int, train: Split, out_dir: Path) -> torch.nn.Module:
    """Digital then hardware-aware training on the surrogate profile (cached per seed)."""
    profile = HardwareProfile.preset(config["profile"])
    in_features = train.images[0].numel()
    model = build_mlp(in_features, config["hidden"], int(train.labels.max()) + 1, seed=seed)
    analog = convert(model, profile, seed=seed)  # what the trained state is loaded into

    def train_surrogate() -> None:
        batch = config["batch_size"]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            fit(
                model,
                make_loader(train, batch, seed=seed),
                epochs=config["digital_epochs"],
                lr=config["digital_lr"],
                label="digital",
            )
            trained = convert(model, profile, seed=seed)
            fit(
                trained,
                make_loader(train, batch, seed=seed + 1),
                epochs=config["hwa_epochs"],
                lr=config["hwa_lr"],
                label="hardware-aware",
            )
        analog.load_state_dict(trained.state_dict())  # as a later run loads it from the file

    return trained_once(
        analog, out_dir / "models" / f"surrogate-seed{seed}.pt", train_surrogate
    ).eval()


def _cell(
    config: dict, base: torch.nn.Module, train: Split, test: Split, seed: int, chip: int
) -> dict[str, Any]:
    def backend() -> VirtualChip:
        return VirtualChip(seed=chip, design_seed=config["design_seed"])

    test_loader = make_loader(test, 500, shuffle=False)
    record: dict[str, Any] = {"seed": seed, "chip": chip, "accuracy": {}, "backend_calls": {}}
    record["accuracy"]["surrogate-only"] = evaluate_on_backend(base, backend(), test_loader)
    record["surrogate_ideal_accuracy"] = accuracy(base, test_loader)
    options = {
        "steps": config["steps"],
        "lr": config["lr"],
        "calibration_batches": config["calibration_batches"],
    }
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        hil_model, hil_chip = copy.deepcopy(base), backend()
        hil = hil_train(
            hil_model,
            hil_chip,
            make_loader(train, config["batch_size"], seed=seed + 2),
            budget=config["budget"],
            recalibrate_every=config["recalibrate_every"],
            **options,
        )
        twin_model, twin_chip = copy.deepcopy(base), backend()
        twin = twin_train(
            twin_model,
            twin_chip,
            make_loader(train, config["batch_size"], seed=seed + 2),
            **options,
        )
    record["accuracy"]["HIL"] = evaluate_on_backend(hil_model, backend(), test_loader)
    record["accuracy"]["I/O twin"] = evaluate_on_backend(twin_model, backend(), test_loader)
    record["backend_calls"] = {"HIL": hil.backend_calls, "I/O twin": twin.backend_calls}
    record["twin_error_first"] = hil.twin_errors[0]
    record["twin_error_last"] = hil.twin_errors[-1]
    record["twin_only_from_step"] = hil.twin_only_from_step
    if config["calibrate"]:
        model, calibrated = _calibrated_arm(config, base, train, seed, backend)
        record["accuracy"][CALIBRATED] = evaluate_on_backend(model, backend(), test_loader)
        record["backend_calls"][CALIBRATED] = 0
        record["device_reads"] = calibrated.device_reads
        record["calibrations"] = [
            {name: e.to_dict() for name, e in _fitted(c).items()} for c in calibrated.calibrations
        ]
    return record


def _calibrated_arm(
    config: dict,
    base: torch.nn.Module,
    train: Split,
    seed: int,
    backend: Callable[[], VirtualChip],
) -> tuple[torch.nn.Module, CalibratedResult]:
    """The calibrated physical surrogate of one cell: the fine-tuned model and its run."""
    arm = config["calibrate"]
    model = copy.deepcopy(base)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        result = calibrated_train(
            model,
            backend(),
            make_loader(train, config["batch_size"], seed=seed + 2),
            steps=config["steps"],
            lr=config["lr"],
            plan=MeasurementPlan(**arm["measurements"]),
            refresh_every=arm["refresh_every"],
            seed=seed,
        )
    return model, result


def _fitted(result: CalibrationResult) -> dict[str, Estimate]:
    """Every fitted parameter of a calibration, keyed by profile field."""
    return {name: e for fit in result.fits.values() for name, e in fit.parameters().items()}


def run_hil_study(
    config: dict[str, Any],
    out_dir: Path,
    data_dir: str | None = None,
    *,
    backend: str = "local",
    show_progress: bool = False,
) -> str:
    """Run (or resume: finished cells are kept) the study, one cell per (seed, chip); write
    ``cells/``, ``summary.json``, ``report.md`` and ``accuracy.png``; returns the markdown."""
    train = _subset(load_dataset(config["dataset"], "train", data_dir), config["train_subset"])
    test = _subset(load_dataset(config["dataset"], "test", data_dir), config["test_subset"])
    bases: dict[int, torch.nn.Module] = {}  # each seed's surrogate model, trained once

    def run(params: dict[str, Any]) -> dict[str, Any]:
        seed = params["seed"]
        if seed not in bases:
            bases[seed] = _surrogate_model(config, seed, train, out_dir)
        return _cell(config, bases[seed], train, test, seed, params["chip"])

    cells = [
        (f"seed{seed}-chip{chip}", {"seed": seed, "chip": chip})
        for seed in config["seeds"]
        for chip in config["chips"]
    ]
    records = run_cells(
        cells, run, out_dir, backend=backend, label=config["name"], show_progress=show_progress
    )
    return _summarise(config, records, out_dir)


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _calibration_lines(records: list[dict]) -> list[str]:
    """The calibrated arm's parameters: last calibration of each cell, mean ± std over cells,
    and the mean standard error of the first and of the last calibration."""
    rounds = len(records[0]["calibrations"])
    lines = [
        "",
        f"Calibrated on the chips ({rounds} measurement rounds per cell, "
        f"{statistics.fmean(r['device_reads'] for r in records):.3g} device reads):",
        "",
        "| parameter | fitted (last round), mean ± std over cells | std. error: first → last |",
        "|---|---|---|",
    ]
    for name in records[0]["calibrations"][-1]:
        values = [r["calibrations"][-1][name]["value"] for r in records]
        errors = [
            statistics.fmean(r["calibrations"][k][name]["stderr"] or 0.0 for r in records)
            for k in (0, -1)
        ]
        mean, std = _stats(values)
        lines.append(f"| {name} | {mean:.4g} ± {std:.2g} | {errors[0]:.2g} → {errors[1]:.2g} |")
    return lines


def _summarise(config: dict, records: list[dict], out_dir: Path) -> str:
    name = config["name"]
    methods = _methods(config)
    summary = {m: _stats([100 * r["accuracy"][m] for r in records]) for m in methods}
    calls = {m: _stats([r["backend_calls"][m] for r in records]) for m in methods[1:]}
    reads = {m: 0.0 for m in methods} | (
        {CALIBRATED: statistics.fmean(r["device_reads"] for r in records)}
        if CALIBRATED in methods
        else {}
    )
    ideal = _stats([100 * r["surrogate_ideal_accuracy"] for r in records])
    lines = [
        f"# {name}: HIL vs surrogate-only training on a VirtualChip",
        "",
        f"{config['dataset']} ({config['train_subset']} train / {config['test_subset']} test), "
        f"MLP {config['hidden']}, surrogate profile `{config['profile']}`; "
        f"{len(records)} cells = seeds {config['seeds']} × VirtualChip devices "
        f"{config['chips']} (hidden design {config['design_seed']}); {config['steps']} "
        f"fine-tuning steps at lr {config['lr']}, budget {config['budget']}.",
        "",
        "| method | accuracy on the chip (%) | backend input vectors | device reads |",
        "|---|---|---|---|",
    ]
    for method in methods:
        mean, std = summary[method]
        label = method
        if method == "surrogate-only":
            label = f"surrogate-only (ideal eval: {ideal[0]:.2f} ± {ideal[1]:.2f})"
        vectors = calls[method][0] if method in calls else 0.0
        lines.append(f"| {label} | {mean:.2f} ± {std:.2f} | {vectors:.0f} | {reads[method]:.3g} |")
    lines += ["", f"| seed | chip | {' | '.join(methods)} |", "|---" * (2 + len(methods)) + "|"]
    for r in records:
        accs = " | ".join(f"{100 * r['accuracy'][m]:.2f}" for m in methods)
        lines.append(f"| {r['seed']} | {r['chip']} | {accs} |")
    if CALIBRATED in methods:
        lines += _calibration_lines(records)
    lines += ["", f"![{name}](accuracy.png)", ""]
    plt = pyplot()
    # Means with ±std whiskers, not bars: the axis can zoom on the differences honestly.
    fig, ax = plt.subplots(figsize=(1.6 * len(methods) + 1.5, 4))
    for i, method in enumerate(methods):
        mean, std = summary[method]
        ax.errorbar([i], [mean], yerr=[std], fmt="o", capsize=4, color=f"C{i}")
    ax.set_xticks(range(len(methods)), [m.replace(" ", "\n", 1) for m in methods])
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_xlabel("training method (all evaluated on the chip)")
    ax.set_ylabel(f"test accuracy on the chip (%)\nmean ± std over {len(records)} cells")
    ax.set_title(f"{name}:\ntraining methods evaluated on a VirtualChip", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_dir / "accuracy.png")
    write_json(
        out_dir / "summary.json",
        {"config": config, "summary": summary, "calls": calls, "cells": records},
    )
    markdown = "\n".join(lines)
    write_atomic(out_dir / "report.md", markdown)
    return markdown
