"""Maze study (``experiments/deq/maze.yaml``): cell accuracy against the number of core
iterations, on the study's chips, and the accuracy a hand-built contractive flood fill reaches.

For each seed the trained physics-aware DEQ and explicit twin are read from the run folder's
checkpoints and run with the core applied ``K`` times from rest (``ExplicitHybrid`` with
``steps=K``; K = 1 is ``σ(u)``, no feedback) and to the fixed point. A cell counts as right when
the output's sign matches its ±1 label; the table gives the mean ± std over seeds of the mean
over the ``eval.chips`` chips (seeds ``1000 · seed + k``, as the study scores them).

The reference row is a DEQ written by hand for the flood fill, ``z = tanh(α A (z + 1) + u)``
with ``A`` the grid's 4-neighbour adjacency, ``u = b`` on open cells, ``−6`` on walls, ``+8``
at the source: the best over α, b and a threshold on the test set. Its feedback is a
contraction only for ``α < 1 / λ_max(A)`` (≈ 0.266 on 8 × 8), so a signal crossing a corridor
cell is multiplied by at most α < 1 / 3.7 per step: the equilibrium of a contraction is unique,
while the Boolean flood fill has one fixed point per union of open clusters, so a contractive
core can only approximate it near the source.

Run: ``python benchmarks/deq_maze_iterations.py [RUN_FOLDER]`` after ``analogtorch deq study
experiments/deq/maze.yaml --out RUN_FOLDER`` (default ``docs/results/deq/maze``; the trained
checkpoints are in its ``models/``); writes ``iterations.json`` there.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path

import torch

from analogtorch.deq.explicit import ExplicitHybrid
from analogtorch.deq.study import build_study_model, load_study, setting_profile
from analogtorch.deq.training import forward_batches
from analogtorch.hardware.chip import Chip
from analogtorch.study_cells import study_profile
from analogtorch.tasks import make_task

STEPS = (1, 2, 4, 8, 16)
CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "deq" / "maze.yaml"


def cell_accuracy(output: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of cells whose predicted sign matches the ±1 label."""
    return 100.0 * float((torch.sign(output) == labels).double().mean())


def on_chips(model, x, y, profile, config, seed) -> float:
    e = config["eval"]
    accuracies = []
    for k in range(e["chips"]):
        with Chip(profile, 1000 * seed + k).deploy(model, time_s=e["time_s"]):
            out, _ = forward_batches(model.eval(), x)
        accuracies.append(cell_accuracy(out, y))
    return statistics.fmean(accuracies)


def flood_fill_ceiling(x: torch.Tensor, y: torch.Tensor, size: int) -> dict[str, float]:
    """Best cell accuracy of the hand-built contractive flood fill (module docstring)."""
    cells = torch.arange(size * size)
    rows, cols = cells // size, cells % size
    adjacency = ((rows[:, None] - rows).abs() + (cols[:, None] - cols).abs() == 1).double()
    alpha_max = 1.0 / float(torch.linalg.eigvalsh(adjacency).max())
    open_cells, source = x[:, : size * size].double(), x[:, size * size :].double()
    best = {"cell_accuracy": 0.0}
    for fraction, bias in itertools.product((0.5, 0.75, 0.95), (-1.5, -1.0, -0.6, -0.3, 0.0)):
        alpha = fraction * alpha_max
        u = torch.where(open_cells > 0, bias, -6.0) + 8.0 * source
        z = torch.zeros_like(u)
        for _ in range(400):  # contraction ≤ 0.95: 400 steps reach 1e-8
            z = torch.tanh(alpha * (z + 1.0) @ adjacency + u)
        for threshold in torch.linspace(-1, 1, 81).tolist():
            accuracy = cell_accuracy(z - threshold, y)
            if accuracy > best["cell_accuracy"]:
                best = {"cell_accuracy": accuracy, "alpha": alpha, "bias": bias}
    return {**best, "alpha_max": alpha_max}


def main(run: Path) -> None:
    config = load_study(CONFIG)
    task = make_task(config["task"], n_train=config["n_train"], n_test=config["n_test"])
    x, y = task.x_test, task.y_test
    setting = config["settings"][0]
    profile = setting_profile(study_profile(config), setting)
    rows: dict[str, list[float]] = {}
    for seed in config["seeds"]:
        for arm in ("physics-aware", "explicit"):
            model = build_study_model(config, task, profile, seed)
            if arm == "explicit":
                model = ExplicitHybrid.from_hybrid(model)
            checkpoint = run / "models" / f"ckpt-{arm}-{setting['name']}-{seed}.pt"
            model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
            model.set_profile(profile)
            for steps in STEPS:
                twin = ExplicitHybrid.from_hybrid(model, steps)
                rows.setdefault(f"{arm}|K={steps}", []).append(
                    on_chips(twin, x, y, profile, config, seed)
                )
            deq = build_study_model(config, task, profile, seed)
            deq.load_state_dict(model.state_dict())
            rows.setdefault(f"{arm}|fixed point", []).append(
                on_chips(deq, x, y, profile, config, seed)
            )
    trivial = cell_accuracy(2.0 * x[:, : task.info["size"] ** 2] - 1.0, y)
    ceiling = flood_fill_ceiling(x, y, task.info["size"])
    print("| trained as | core iterations | cell accuracy on chips (%) |\n|---|---|---|")
    for key, values in rows.items():
        arm, steps = key.split("|")
        mean, std = statistics.fmean(values), statistics.stdev(values)
        print(f"| {arm} | {steps} | {mean:.2f} ± {std:.2f} |")
    print(
        f"\nevery open cell reachable: {trivial:.2f} %; hand-built contractive flood fill "
        f"(digital): {ceiling['cell_accuracy']:.2f} % (α = {ceiling['alpha']:.3f}, "
        f"α_max = {ceiling['alpha_max']:.3f}, b = {ceiling['bias']})"
    )
    record = {"cell_accuracy_on_chips": rows, "open_is_reachable": trivial, "ceiling": ceiling}
    (run / "iterations.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/deq/maze"))
