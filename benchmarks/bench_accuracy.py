"""Accuracy on chips at high weight noise: analogtorch's default path vs aihwkit-lightning.

The setting of issue 15: Fashion-MNIST, MLP 784-256-256-10, trained ``--epochs`` epochs with
Adam (lr 1e-3, batch 128) from the same initialisation, the way a user would:

* **analogtorch** — ``at.convert(model, HardwareProfile.preset("seed-4bit-10pct"))`` and a
  plain training loop (nothing else: whatever the library does by default);
* **aihwkit-lightning** — its standard hardware-aware-training recipe: 10 % per-channel
  Gaussian weight noise, 8-bit I/O, 4 % output noise, per-channel 2.5σ weight clipping after
  every optimiser step, learned input ranges (``pip install -e '.[bench]'``).

Both are scored the same way: the trained weights in a plain torch MLP, converted with the
seed preset (4-bit weights, 8-bit converters) and read on ``--chips`` chips at 1x and 2x the
preset's 10 % programming noise (10 % and 20 % of each row's largest weight), 1 h after
programming (:func:`analogtorch.evaluate`). The analogtorch model keeps its learned
converter ranges; the peer's input ranges are re-initialised from data by the scorer.

Prints mean ± std over chips and seeds per method and noise level.

    python benchmarks/bench_accuracy.py --seeds 0 1 2 --epochs 5
    python benchmarks/bench_accuracy.py --ablation    # the default path without clipping
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from peers import lightning_convert
from torch import nn

import analogtorch as at
from analogtorch.data import load_dataset
from analogtorch.models import build_model

PRESET = "seed-4bit-10pct"


def batches(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator | None = None):
    order = torch.randperm(len(x), generator=gen) if gen is not None else torch.arange(len(x))
    return [(x[i], y[i]) for i in order.split(size)]


def train(model: nn.Module, optimizer, data, epochs: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for x, y in batches(*data, 128, gen):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def analogtorch_default(
    plain: nn.Module, data, epochs: int, seed: int, changes: dict | None = None
) -> nn.Module:
    profile = at.HardwareProfile.preset(PRESET).replace(**(changes or {}))
    model = at.convert(plain, profile, seed=seed)
    train(model, torch.optim.Adam(model.parameters(), lr=1e-3), data, epochs, seed)
    return model


def lightning_hwa(plain: nn.Module, data, epochs: int, seed: int) -> nn.Module | None:
    model = lightning_convert(plain, clip_sigma=2.5)
    if model is None:
        return None
    from aihwkit_lightning.optim import AnalogOptimizer

    torch.manual_seed(seed)
    optimizer = AnalogOptimizer(torch.optim.Adam, model.analog_layers, model.parameters(), lr=1e-3)
    train(model, optimizer, data, epochs, seed)
    digital, _ = build_model("mnist-mlp", seed=seed)
    digital.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k in digital.state_dict()}
    )
    return digital


def score(model: nn.Module, test, chips: int, seed: int) -> dict[float, tuple[float, float]]:
    """(mean, std) accuracy over ``chips`` chips per noise scale."""
    report = at.evaluate(
        model,
        batches(*test, 1000),
        n_chips=chips,
        times=(3600.0,),
        profile=at.HardwareProfile.preset(PRESET),
        noise_scales=(1.0, 2.0),
        seed=10_000 + 100 * seed,
    )
    return {r.noise_scale: (r.accuracy_mean, r.accuracy_std) for r in report.rows[1:]}


def pooled(parts: list[tuple[float, float]]) -> str:
    """Mean ± std over every chip of every seed (equal chips per seed): the law of total
    variance, std² = mean of the per-seed variances + variance of the per-seed means."""
    means = [m for m, _ in parts]
    var = statistics.fmean(s * s for _, s in parts) + statistics.pvariance(means)
    return f"{100 * statistics.fmean(means):.1f} ± {100 * var**0.5:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--chips", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument(
        "--ablation", action="store_true", help="only analogtorch without weight clipping"
    )
    args = parser.parse_args()
    train_split = load_dataset("fashion-mnist", "train")
    test_split = load_dataset("fashion-mnist", "test")
    n = args.n_train or len(train_split.images)
    data = (train_split.images[:n], train_split.labels[:n])
    test = (test_split.images, test_split.labels)
    methods = {"analogtorch default": analogtorch_default, "aihwkit-lightning HWA": lightning_hwa}
    if args.ablation:  # the default path without its weight clipping
        methods = {
            "analogtorch, no clipping": partial(
                analogtorch_default, changes={"weight_clip_sigma": None}
            )
        }
    results: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for label, method in methods.items():
        for seed in args.seeds:
            plain, _ = build_model("mnist-mlp", seed=seed)
            started = time.perf_counter()
            model = method(plain, data, args.epochs, seed)
            if model is None:
                print(f"{label}: not installed (pip install -e '.[bench]')")
                break
            scores = score(model, test, args.chips, seed)
            for scale, part in scores.items():
                results.setdefault(label, {}).setdefault(scale, []).append(part)
            accs = ", ".join(f"{100 * m:.1f}" for m, _ in scores.values())
            print(f"{label} seed {seed}: {accs} % ({time.perf_counter() - started:.0f} s)")
    runs = f"{args.epochs} epochs, {args.chips} chips x {len(args.seeds)} seeds"
    print(f"\nFashion-MNIST MLP, {runs}")
    print(f"{'method':<24} {'4-bit + 10 %':>14} {'4-bit + 20 %':>14}")
    for label, by_scale in results.items():
        print(f"{label:<24} {pooled(by_scale[1.0]):>14} {pooled(by_scale[2.0]):>14}")


if __name__ == "__main__":
    main()
