"""Markdown table and plot of a swing-up study's cells (see ``swingup_study.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..figures import pyplot, save_figure
from ..study_cells import mean_std
from ..tasks.swingup import START_SETS


def _pct(values: list[float]) -> str:
    mean, std = mean_std([100.0 * v for v in values])
    return f"{mean:.1f} ± {std:.1f}"


def _scores(records: list[dict[str, Any]], arm: str) -> list[dict[str, Any]]:
    """Per-run scores of ``arm``: one per seed, or (hybrid) one per seed and chip."""
    cells = [r for r in records if r["arm"] == arm]
    return [chip for r in cells for chip in r["chips"]] if arm == "hybrid" else cells


def summarise_swingup(config: dict[str, Any], records: list[dict[str, Any]], out_dir: Path) -> str:
    name, e, d = config["name"], config["eval"], config["train"]["dagger"]
    seeds = config["seeds"]
    lines = [
        f"# {name}: pendulum swing-up by DAgger — expert vs digital DEQ vs hybrid DEQ on chips",
        "",
        f"Closed-loop success (%): |θ − π| < 0.2 rad and |θ̇| < 1 rad/s at every step of the "
        f"last 20 % of 15 s at 50 Hz, |u| ≤ 2 N·m, from {e['starts']} fixed starts per set "
        "(hanging: θ, θ̇ ~ N(0, 0.1²); uniform: θ ~ U(−π, π), θ̇ ~ U(−2, 2) rad/s). Digital "
        f"DEQ: mean ± std over seeds {seeds}; hybrid: over {e['chips']} programmed "
        f"`{config['profile']}` chips ({config['profile_changes']}) at t = {e['time_s']:g} s "
        f"per seed ({e['chips'] * len(seeds)} runs). Model {config['model']}; DAgger {d}, "
        f"first round {config['train']['epochs']} epochs.",
        "",
        "| controller | "
        + " | ".join(f"success from {s} (%)" for s in START_SETS)
        + " | cost from hanging |",
        "|---|---|---|---|",
    ]
    labels = {
        "expert": "smooth expert",
        "digital DEQ": "digital DEQ",
        "hybrid": "hybrid DEQ on chips",
    }
    for arm, label in labels.items():
        runs = _scores(records, arm)
        if not runs:
            continue
        rates = [_pct([r[s]["success"] for r in runs]) for s in START_SETS]
        cost = mean_std([r["hanging"]["cost"] for r in runs])
        lines.append(f"| {label} | {' | '.join(rates)} | {cost[0]:.2f} ± {cost[1]:.2f} |")
    lines += [
        "",
        "DAgger rounds: success (%) of the training rollouts of each round's policy (fresh "
        "starts, half hanging, half uniform; hybrid: on a new training chip each round), "
        "mean ± std over seeds:",
        "",
        "| round | states | " + " | ".join(labels[a] for a in ("digital DEQ", "hybrid")) + " |",
        "|---|---|---|---|",
    ]
    curves = {
        arm: [r["rounds"] for r in records if r["arm"] == arm] for arm in ("digital DEQ", "hybrid")
    }
    for k in range(d["rounds"]):
        states = next(c[k]["states"] for runs in curves.values() for c in runs)
        rates = [_pct([c[k]["success_rate"] for c in runs]) for runs in curves.values()]
        lines.append(f"| {k} | {states} | {' | '.join(rates)} |")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for arm, runs in curves.items():
        points = [
            mean_std([100.0 * c[k]["success_rate"] for c in runs]) for k in range(d["rounds"])
        ]
        ax.errorbar(
            range(d["rounds"]),
            [p[0] for p in points],
            yerr=[p[1] for p in points],
            fmt="o-",
            capsize=4,
            label=labels[arm],
        )
    ax.set_xticks(range(d["rounds"]))
    ax.set_xlabel("DAgger round (0 = behaviour cloning of the expert's rollouts)")
    ax.set_ylabel("closed-loop success (%)")
    ax.set_ylim(-5, 105)
    ax.legend()
    ax.set_title(f"{name}: success of each round's policy", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_dir / f"{name}.png")
    lines += ["", f"![{name}]({name}.png)", ""]
    return "\n".join(lines)
