"""Weight grids and rounding in training: symmetric vs affine, nearest vs stochastic.

Fashion-MNIST, MLP 784-256-256-10 (``mnist-mlp``), trained ``--epochs`` epochs with Adam
(lr 1e-3, batch 128) on the first ``--n-train`` images, on the ``seed-4bit-10pct`` preset
(``--bits``-bit weights, 8-bit converters, 10 % programming noise) with each combination of
``weight_quant`` and ``weight_rounding``; ``--noise 0`` trains and scores without
programming noise, isolating the quantisation. Scored on the full test set: ideal (nearest
rounding, no noise) and on ``--chips`` chips read 1 h after programming (each model on the
grid it was trained for; chips always round to nearest). Prints mean ± std over seeds
(ideal) and over every chip of every seed (chips).

    python benchmarks/bench_weight_rounding.py --bits 4 --seeds 0 1 2 --epochs 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_accuracy import batches, pooled, train

import analogtorch as at
from analogtorch.data import load_dataset
from analogtorch.models import build_model

VARIANTS = {
    "symmetric, nearest": {"weight_quant": "symmetric", "weight_rounding": "nearest"},
    "symmetric, stochastic": {"weight_quant": "symmetric", "weight_rounding": "stochastic"},
    "affine, nearest": {"weight_quant": "affine", "weight_rounding": "nearest"},
    "affine, stochastic": {"weight_quant": "affine", "weight_rounding": "stochastic"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.10, help="prog_noise_std")
    parser.add_argument("--chips", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    train_split = load_dataset("fashion-mnist", "train")
    test_split = load_dataset("fashion-mnist", "test")
    data = (train_split.images[: args.n_train], train_split.labels[: args.n_train])
    test = batches(test_split.images, test_split.labels, 1000)
    base = at.HardwareProfile.preset("seed-4bit-10pct").replace(
        weight_bits=args.bits, prog_noise_std=args.noise
    )
    ideal: dict[str, list[float]] = {}
    chips: dict[str, list[tuple[float, float]]] = {}
    for label in args.variants:
        profile = base.replace(**VARIANTS[label])
        for seed in args.seeds:
            started = time.perf_counter()
            plain, _ = build_model("mnist-mlp", seed=seed)
            model = at.convert(plain, profile, seed=seed)
            train(model, torch.optim.Adam(model.parameters(), lr=1e-3), data, args.epochs, seed)
            report = at.evaluate(
                model, test, n_chips=args.chips, times=(3600.0,), seed=10_000 + 100 * seed
            )
            ideal.setdefault(label, []).append(report.rows[0].accuracy_mean)
            row = report.rows[1]
            chips.setdefault(label, []).append((row.accuracy_mean, row.accuracy_std))
            print(
                f"{label} seed {seed}: ideal {100 * report.rows[0].accuracy_mean:.2f}, chips "
                f"{100 * row.accuracy_mean:.2f} % ({time.perf_counter() - started:.0f} s)"
            )
    setting = (
        f"{args.bits}-bit weights, prog noise {args.noise:g}, {args.epochs} epochs on "
        f"{args.n_train} images, {args.chips} chips x {len(args.seeds)} seeds"
    )
    print(f"\nFashion-MNIST MLP, {setting}")
    print(f"{'weights':<24} {'ideal':>14} {'chips (1 h)':>14}")
    for label in args.variants:
        means = [100 * a for a in ideal[label]]
        spread = statistics.stdev(means) if len(means) > 1 else 0.0
        ideal_text = f"{statistics.fmean(means):.1f} ± {spread:.1f}"
        print(f"{label:<24} {ideal_text:>14} {pooled(chips[label]):>14}")


if __name__ == "__main__":
    main()
