"""Markdown tables and plots of a DEQ study's cells (see ``study.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..figures import pyplot, save_figure
from ..study_cells import mean_std
from .hil_arm import METHODS


def _fmt(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(config: dict[str, Any], records: list[dict[str, Any]], out_dir: Path) -> str:
    name = config["name"]
    e = config["eval"]
    plt = pyplot()
    if config["kind"] == "physics":
        return _summarise_physics(config, records, out_dir, plt)
    # Classification cells hold an error rate in %, regression cells a relative L2 error.
    regression = any(r.get("task_kind") == "regression" for r in records)
    metric = "relative L2 error (%)" if regression else "accuracy (%)"

    def score(error: float) -> float:
        return 100.0 * error if regression else 100.0 - error

    def percent(error: float) -> float:
        return 100.0 * error if regression else error

    lines = [
        f"# {name}: hybrid analog–digital DEQ on {config['task']}",
        "",
        f"Profile `{config['profile']}` with {config['profile_changes']}; model "
        f"{config['model']}; training {config['train']}, regularisers "
        f"{config['regularizers']}, curriculum {config['curriculum']}. "
        f"{metric.split(' (')[0].capitalize()} on "
        f"{e['chips']} programmed chips at t = {e['time_s']:g} s: mean ± std over seeds "
        f"{config['seeds']} (each seed: mean over its chips).",
        "",
        f"| setting | arm | {metric}, ideal | {metric}, on chips | chip spread "
        "| iterations | ADC SNR (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    series: dict[str, list[tuple[str, float, float]]] = {}
    for setting in config["settings"]:
        for arm in [a for a in config["arms"] if a != "hil"]:  # hil: scored on its own chips
            cell = [r for r in records if r["arm"] == arm and r["setting"] == setting["name"]]
            acc = [score(r["error"]) for r in cell]
            spread = mean_std([r["error_std"] * (100.0 if regression else 1.0) for r in cell])[0]
            lines.append(
                f"| {setting['name']} | {arm} | {_fmt([score(r['error_ideal']) for r in cell])} "
                f"| {_fmt(acc)} | {spread:.2f} "
                f"| {_fmt([r['iterations'] for r in cell], 1)} "
                f"| {_fmt([r['snr_db'] for r in cell], 1)} |"
            )
            series.setdefault(arm, []).append((setting["name"], *mean_std(acc)))
    lines += _relaxation_forward_table(config, records, score)
    lines += _feedback_ablation_table(config, records, score, metric)
    lines += _relaxation_check_table(records, percent)
    lines += _hil_table(config, records, score, out_dir, plt)
    # Means with ±std whiskers, not bars: the axis can zoom on the differences honestly.
    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0.3 / max(len(series), 1)
    for i, (arm, points) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * offset for j in range(len(points))]
        ax.errorbar(
            xs, [p[1] for p in points], yerr=[p[2] for p in points], fmt="o", capsize=4, label=arm
        )
    ax.set_xticks(range(len(config["settings"])), [s["name"] for s in config["settings"]])
    ax.set_ylabel(f"test {metric.replace(' (', ' on chips (')}")
    ax.set_xlabel("hardware setting (bits, weight noise σ / g_max)")
    ax.legend()
    ax.set_title(f"{name}:\n{' vs '.join(series)} (arms)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_dir / "results.png")
    lines += ["", f"![{name}](results.png)", ""]
    return "\n".join(lines)


def _hil_table(config, records, score, out_dir: Path, plt) -> list[str]:
    """Cells of the ``hil`` arm: each method on the VirtualChips it was fine-tuned on, as
    tables and as a plot of the (seed, chip) pairs (``hil.png``)."""
    cells = [r for r in records if r["arm"] == "hil"]
    if not cells:
        return []
    stage = config["train"]["hil"]
    methods = [m for m in METHODS if m in cells[0]["hil"][0]]
    lines = [
        "",
        f"Arm `hil` (the curriculum's last stage): the physics-aware model fine-tuned "
        f"{stage['steps']} steps at lr {stage['lr']:g} on each VirtualChip {stage['chips']} "
        f"(hidden design {stage['design_seed']}), scored on that chip; mean ± std over the "
        f"{len(cells) * len(stage['chips'])} (seed, chip) pairs. Iterations and converged "
        "fraction of the test-set solves on the chip; reads: the chip's input vectors spent "
        "on fine-tuning (calibration included).",
        "",
        "| setting | method | accuracy on the chip (%) | iterations | converged solves (%) "
        "| training reads |",
        "|---|---|---|---|---|---|",
    ]
    for setting in config["settings"]:
        pairs = [c for r in cells if r["setting"] == setting["name"] for c in r["hil"]]
        for method in methods:
            runs = [c[method] for c in pairs]
            reads = mean_std([r.get("training_reads", 0) for r in runs])[0]
            converged = [100 * r["solves"]["converged_fraction"] for r in runs]
            lines.append(
                f"| {setting['name']} | {method} | {_fmt([score(r['error']) for r in runs])} "
                f"| {_fmt([r['iterations'] for r in runs], 1)} | {_fmt(converged, 1)} "
                f"| {reads:.0f} |"
            )
    for method in methods[1:]:
        runs = [c[method] for r in cells for c in r["hil"]]
        twin = [
            [sum(e.values()) / len(e) for e in (r["twin_error_first"], r["twin_error_last"])]
            for r in runs
        ]
        solves = [r["training_solves"] for r in runs]
        lines += [
            "",
            f"{method}: twin relative rms error {_fmt([t[0] for t in twin], 3)} at the first "
            f"fit, {_fmt([t[1] for t in twin], 3)} at the last; fine-tuning solves "
            f"{_fmt([100 * v['converged_fraction'] for v in solves], 1)} % converged, "
            f"{_fmt([v['iterations'] for v in solves], 1)} iterations, worst final residual "
            f"{max(v['final_residual_max'] for v in solves):.2g} (tol "
            f"{config['model']['tol']:g}).",
        ]
    lines += [
        "",
        "| seed | chip | " + " | ".join(methods) + " |",
        "|---" * (2 + len(methods)) + "|",
    ]
    fig, ax = plt.subplots(figsize=(1.6 * len(methods) + 2.5, 4))
    for r in cells:
        for c in r["hil"]:
            accs = [score(c[m]["error"]) for m in methods]
            lines.append(f"| {r['seed']} | {c['chip']} | {' | '.join(f'{a:.2f}' for a in accs)} |")
            ax.plot(range(len(methods)), accs, "-o", color="0.7", markersize=3)
    for i, method in enumerate(methods):
        mean, std = mean_std([score(c[method]["error"]) for r in cells for c in r["hil"]])
        ax.errorbar([i], [mean], yerr=[std], fmt="o", capsize=4, color=f"C{i}")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_xlabel("fine-tuning on the chip (grey: one seed and chip; colour: mean ± std)")
    ax.set_ylabel("test accuracy on the VirtualChip (%)")
    ax.set_title(f"{config['name']}: arm hil, scored on the chip it was tuned on", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_dir / "hil.png")
    return [*lines, "", f"![{config['name']}: arm hil](hil.png)"]


def _relaxation_forward_table(config, records, score) -> list[str]:
    """Cells of the ``relaxation`` arm: per-sample settling time and energy on chips."""
    cells = [r for r in records if r["arm"] == "relaxation"]
    if not cells:
        return []
    lines = [
        "",
        "Arm `relaxation` (forward = the circuit relaxation; its iterations above are Euler "
        "steps of the simulation): per inference on the chips, mean ± std over seeds of the "
        "mean over chips (in brackets: the std over chips, mean over seeds). Settled: the "
        "change over τ fell below tol; the others stopped at the noise floor, or (unsettled) "
        "ran out of time or diverged.",
        "",
        "| setting | accuracy on chips (%) | settling time (ns) | core energy (nJ) "
        "| settled below tol (%) | unsettled (%) |",
        "|---|---|---|---|---|---|",
    ]
    columns = (
        ("settling_time_s", 1e9, 1),
        ("energy_j", 1e9, 3),
        ("below_tol_fraction", 100.0, 1),
        ("unsettled_fraction", 100.0, 2),
    )
    for setting in config["settings"]:
        cell = [r for r in cells if r["setting"] == setting["name"]]
        if not cell:
            continue
        row = [setting["name"], _fmt([score(r["error"]) for r in cell])]
        for key, scale, digits in columns:
            spread = mean_std([scale * r[f"{key}_std"] for r in cell])[0]
            row.append(f"{_fmt([scale * r[key] for r in cell], digits)} (± {spread:.{digits}f})")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _feedback_ablation_table(config, records, score, metric: str) -> list[str]:
    """With an ``explicit`` arm: each trained model scored on the same chips with the
    equilibrium swapped (``study._feedback_ablation``)."""
    swaps = {
        "as_explicit": "run explicitly",
        "no_feedback": "σ(u), no feedback",
        "as_deq": "run to its fixed point",
    }
    lines = [
        "",
        f"Feedback ablation (the same trained weights on the same chips, {metric}, mean ± "
        "std over seeds): a DEQ run as its explicit twin (the core once) and with no feedback "
        "at all (one step from rest), the explicit twin run to its fixed point.",
        "",
        "| setting | trained as | as trained | " + " | ".join(swaps.values()) + " |",
        "|---|---|---|" + "---|" * len(swaps),
    ]
    rows = 0
    for setting in config["settings"]:
        for arm in ("physics-aware", "explicit"):
            cell = [r for r in records if r["arm"] == arm and r["setting"] == setting["name"]]
            if not any(key in r for r in cell for key in swaps):
                continue
            row = [setting["name"], arm, _fmt([score(r["error"]) for r in cell])]
            for key in swaps:
                found = [score(r[key]["error"]) for r in cell if key in r]
                row.append(_fmt(found) if found else "—")
            lines.append("| " + " | ".join(row) + " |")
            rows += 1
    return lines if rows else []


def _relaxation_check_table(records, percent) -> list[str]:
    """The relaxation check of each arm: the trained weights relaxed vs solved on chip 0
    (``percent``: a cell's error in %, from a rate in % or a relative L2 fraction)."""
    arms = list(dict.fromkeys(r["arm"] for r in records if "relaxation" in r))
    if not arms:
        return []
    cells = {
        arm: [r["relaxation"] for r in records if r["arm"] == arm and "relaxation" in r]
        for arm in arms
    }

    def row(label: str, values) -> str:
        return f"| {label} | " + " | ".join(values(c) for c in cells.values()) + " |"

    lines = [
        "",
        "Analog relaxation vs the solver on the same weights (chip 0, 256 test inputs, first "
        "setting), mean ± std over the cells of each arm (settling time: until the whole "
        "batch is read out; per sample: each inference's own read-out):",
        "",
        "| quantity | " + " | ".join(f"{a} ({len(c)} cells)" for a, c in cells.items()) + " |",
        "|---|" + "---|" * len(cells),
        row("settling time (ns)", lambda c: _fmt([1e9 * r["settling_time_s"] for r in c])),
        row(
            "settling time per sample (ns)",
            lambda c: _fmt([1e9 * r["per_sample"]["settling_time_s"] for r in c]),
        ),
        row("time constant τ (ns)", lambda c: f"{1e9 * c[0]['tau_s']:.1f}"),
        row("solver iterations", lambda c: _fmt([r["solver_iterations"] for r in c], 1)),
        row(
            "‖z_relax − z_solver‖ / ‖z_solver‖",
            lambda c: _fmt([r["state_difference"] for r in c], 4),
        ),
        row(
            "error relaxation / solver (%)",
            lambda c: (
                f"{_fmt([percent(r['error_relaxation']) for r in c])} / "
                f"{_fmt([percent(r['error_solver']) for r in c])}"
            ),
        ),
        row(
            "core energy per inference, iterative (nJ)",
            lambda c: _fmt([1e9 * r["energy_core_iterative_j"] for r in c], 3),
        ),
        row(
            "core energy per inference, relaxation (nJ)",
            lambda c: _fmt([1e9 * r["energy_core_relaxation_j"] for r in c], 3),
        ),
        row(
            "core energy per sample, relaxation (nJ)",
            lambda c: _fmt([1e9 * r["per_sample"]["energy_j"] for r in c], 3),
        ),
        row(
            "whole model per inference, iterative (nJ)",
            lambda c: _fmt([1e9 * r["energy_iterative_j"] for r in c], 3),
        ),
    ]
    return lines + _digital_deq_rows(cells, row)


def _digital_deq_rows(cells, row) -> list[str]:
    """The same weights as a digital DEQ, one input at a time (``digital_cost.py``)."""
    if not all("digital_deq" in r for c in cells.values() for r in c):
        return []
    first = next(iter(cells.values()))[0]["digital_deq"]
    lines = [
        row(
            "digital DEQ iterations per input (batch 1)",
            lambda c: _fmt([r["digital_deq"]["iterations"] for r in c], 1),
        )
    ]
    for name in first["baselines"]:
        for key, unit, scale in (("latency_s", "ns", 1e9), ("energy_j", "nJ", 1e9)):
            lines.append(
                row(
                    f"core {key.split('_')[0]} per inference, digital DEQ on {name} ({unit})",
                    lambda c, name=name, key=key, scale=scale: _fmt(
                        [scale * r["digital_deq"]["baselines"][name][key] for r in c], 3
                    ),
                )
            )
    return lines


def _summarise_core_kinds(config, records, out_dir: Path, plt) -> str:
    """Physics study with ``kinds``: error and equation residual per task and core kind."""
    name, kinds = config["name"], config["kinds"]
    m = config["model"]
    physics = m["physics"] or "the task’s own"
    pi = f", PI coupling {m['coupling']}, physics {physics}" if "pi" in kinds else ""
    lines = [
        f"# {name}: plain vs PI-DEQ vs CC-DEQ hybrid cores",
        "",
        f"Physics-aware hybrid DEQs (width {m['width']}{pi}) on {config['eval']['chips']} "
        f"programmed `{config['profile']}` chips ({config['profile_changes']}) at "
        f"t = {config['eval']['time_s']:g} s; training {config['train']}, "
        f"n_train {config['n_train']}, n_test {config['n_test']}. Error: relative L2 test "
        "error (%) on regression tasks, error rate (%) on classification tasks; residual: "
        "‖R(ŷ)‖₂ / ‖forcing‖₂ (%) of the governing equation on the "
        "predicted state (`deq.physics.equation_residual`; the exact targets give the value "
        f"in the last column). Mean ± std over seeds {config['seeds']} (each seed: mean over "
        "its chips).",
        "",
        "| task | core | error (%) | residual (%) | iterations | residual of exact targets (%) |",
        "|---|---|---|---|---|---|",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for i, kind in enumerate(kinds):
        errors, residuals = [], []
        for task in config["tasks"]:
            cell = [r for r in records if r["task"] == task and r["arm"] == kind]
            # Classification errors are already in %, regression errors a fraction.
            scale = [1 if r.get("task_kind") == "classification" else 100 for r in cell]
            err = [s * r["error"] for s, r in zip(scale, cell, strict=True)]
            res = [100 * r["residual"] for r in cell if "residual" in r]
            exact = [100 * r["residual_exact"] for r in cell if "residual_exact" in r]
            lines.append(
                f"| {task} | {kind} | {_fmt(err)} | {_fmt(res) if res else '—'} "
                f"| {_fmt([r['iterations'] for r in cell], 1)} "
                f"| {_fmt(exact, 4) if exact else '—'} |"
            )
            errors.append(mean_std(err))
            residuals.append(mean_std(res) if res else (float("nan"), 0.0))
        xs = [j + (i - (len(kinds) - 1) / 2) * 0.25 for j in range(len(config["tasks"]))]
        for ax, points in zip(axes, (errors, residuals), strict=True):
            ax.errorbar(
                xs,
                [p[0] for p in points],
                yerr=[p[1] for p in points],
                fmt="o",
                capsize=4,
                label=kind,
            )
    for ax, label in zip(axes, ("test error (%)", "equation residual (%)"), strict=True):
        ax.set_xticks(range(len(config["tasks"])), config["tasks"])
        ax.set_xlabel("task (mean ± std over seeds)")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(f"{name}: hybrid cores on chips", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_dir / "results.png")
    lines += ["", f"![{name}](results.png)", ""]
    return "\n".join(lines)


def _summarise_physics(config, records, out_dir: Path, plt) -> str:
    name = config["name"]
    if config["kinds"]:
        return _summarise_core_kinds(config, records, out_dir, plt)
    arms = ("hybrid", "digital DEQ", "explicit")
    lines = [
        f"# {name}: physics tasks — hybrid DEQ vs digital DEQ vs explicit network",
        "",
        f"Relative L2 test error (%, regression) — mean ± std over seeds {config['seeds']}. "
        f"Hybrid DEQ: on {config['eval']['chips']} programmed `{config['profile']}` chips "
        f"({config['profile_changes']}) at t = {config['eval']['time_s']:g} s; digital DEQ: the "
        f"same architecture trained and run digitally; explicit: in → w → w → out tanh MLP "
        f"with the DEQ's parameter count (w = {config['model']['width']}).",
        "",
        "| task | hybrid DEQ on chips | digital DEQ | explicit net | hybrid iterations |",
        "|---|---|---|---|---|",
    ]
    means = {arm: [] for arm in arms}
    for task in config["tasks"]:
        row = [task]
        for arm in arms:
            errs = [100 * r["error"] for r in records if r["task"] == task and r["arm"] == arm]
            row.append(_fmt(errs))
            means[arm].append(mean_std(errs))
        its = [r["iterations"] for r in records if r["task"] == task and r["arm"] == "hybrid"]
        row.append(_fmt(its, 1))
        lines.append("| " + " | ".join(row) + " |")
    pendulum = [r for r in records if "swing_up_success" in r]
    if pendulum:
        lines += [
            "",
            "Pendulum swing-up in closed loop (32 starts near hanging, 15 s): success rate (%) "
            "and mean cost, mean ± std over seeds (hybrid: on one programmed chip).",
            "",
            "| | " + " | ".join(arms) + " |",
            "|---|---|---|---|",
        ]
        for key, label, scale in (
            ("swing_up_success", "success (%)", 100.0),
            ("swing_up_cost", "cost", 1.0),
        ):
            cells = [_fmt([scale * r[key] for r in pendulum if r["arm"] == arm]) for arm in arms]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.27
    for i, arm in enumerate(arms):
        xs = [j + i * width for j in range(len(config["tasks"]))]
        ax.bar(xs, [m for m, _ in means[arm]], width, yerr=[s for _, s in means[arm]], label=arm)
    ax.set_xticks([j + width for j in range(len(config["tasks"]))])
    ax.set_xticklabels(config["tasks"])
    ax.set_yscale("log")
    ax.set_ylabel("relative L2 test error (%, log scale)")
    ax.set_xlabel("physics task (mean ± std over seeds)")
    ax.set_title(f"{name}:\nhybrid DEQ on chips vs digital DEQ vs explicit net", fontsize=10)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out_dir / "results.png")
    lines += ["", f"![{name}](results.png)", ""]
    return "\n".join(lines)
