"""A small transformer sorts digit sequences on analog hardware (``AnalogMultiheadAttention``).

Task: a sequence of ``--seq-len`` digits drawn uniformly from ``0 ... --vocab - 1`` (one-hot
coded), predict the sorted sequence position by position: token accuracy is the fraction of
positions right, sequence accuracy the fraction of sequences sorted entirely right. The data
are generated from ``--seed``, so nothing is downloaded.

Model: one-hot tokens -> linear embedding + learned positions -> ``--layers`` pre-norm
``nn.TransformerEncoderLayer`` (``--d-model`` wide, ``--heads`` heads, 2x wide feed-forward)
-> final LayerNorm -> linear head over the vocabulary at every position.

Two models from the same initial weights, the same data and the same Adam loop:

* digital: trained in float32, scored ideal and, converted, on ``--chips`` chips;
* hardware-aware: ``at.convert(model, HardwareProfile.preset("seed-4bit-10pct"))`` first, so
  every projection of every attention, the feed-forward layers, the embedding and the head
  train through the surrogate (4-bit weights, 10 % programming noise, 8-bit DAC/ADC); scored
  ideal and on the same chips.

Chips ``k = 0 ... --chips - 1`` are ``at.Chip(profile, seed=k)`` read at t = 0 s; rows give
mean ± sample std over chips. Energy per sequence comes from ``at.energy.estimate`` on the
hardware-aware model with the test inputs: the crossbar products, the digital periphery,
and the attention products ``QK^T`` and ``AV`` (two activations multiplied on the digital
unit, ``2 L^2 d`` MACs per layer, plus the softmax), which the table lists apart.

Run: ``python experiments/transformer/sequence_task.py --out runs/transformer-sort``; it
writes ``summary.json`` and ``results.md`` there.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import analogtorch as at

PROFILE = "seed-4bit-10pct"


class SortingTransformer(nn.Module):
    """One-hot digits (N, L, V) -> logits (N, V, L) of the sorted sequence (class axis 1, as
    ``F.cross_entropy`` and ``at.evaluate`` take it)."""

    def __init__(self, vocab: int, seq_len: int, d_model: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(vocab, d_model, bias=False)  # a one-hot row read: a lookup
        self.position = nn.Parameter(0.02 * torch.randn(seq_len, d_model))
        block = nn.TransformerEncoderLayer(
            d_model, heads, 2 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            block, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.position)).transpose(1, 2)


def make_data(n: int, seq_len: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` one-hot digit sequences (n, L, V) and their sorted digits (n, L)."""
    digits = torch.randint(vocab, (n, seq_len), generator=torch.Generator().manual_seed(seed))
    return F.one_hot(digits, vocab).float(), digits.sort(dim=1).values


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    args: argparse.Namespace,
) -> list[float]:
    """Adam with a cosine learning-rate decay; the mean training loss of every epoch."""
    x, y = data
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order = torch.Generator().manual_seed(args.seed + 1)
    model.train()
    losses = []
    for _ in range(args.epochs):
        total = 0.0
        for batch in torch.randperm(len(x), generator=order).split(args.batch_size):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(x))
    return losses


@torch.no_grad()
def accuracies(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """(token accuracy, sequence accuracy) of ``model`` in eval mode."""
    x, y = data
    model.eval()
    right = torch.cat([model(xb).argmax(dim=1) for xb in x.split(512)]) == y
    return float(right.float().mean()), float(right.all(dim=1).float().mean())


def on_chips(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], n_chips: int) -> dict:
    """Ideal and per-chip accuracies of an analog model, with mean and std over chips."""
    profile = at.HardwareProfile.preset(PROFILE)
    token, sequence = [], []
    for seed in range(n_chips):
        with at.Chip(profile, seed=seed).deploy(model, time_s=0.0):
            tok, seq = accuracies(model, data)
        token.append(tok)
        sequence.append(seq)
    ideal_token, ideal_sequence = accuracies(model, data)
    spread = statistics.stdev if n_chips > 1 else lambda _: 0.0
    return {
        "ideal_token_accuracy": ideal_token,
        "ideal_sequence_accuracy": ideal_sequence,
        "chip_accuracy_mean": statistics.fmean(token),
        "chip_accuracy_std": spread(token),
        "chip_sequence_accuracy_mean": statistics.fmean(sequence),
        "chip_sequence_accuracy_std": spread(sequence),
        "chip_token_accuracies": token,
    }


def energy(model: nn.Module, inputs: torch.Tensor) -> dict:
    """Per-sequence energy (J) of the analog model, its attention products split out."""
    report = at.energy.estimate(model, inputs=inputs, name="sorting transformer")
    attention = [layer for layer in report.layers if layer.kind == "attention"]
    attention_j = sum(layer.total_energy_j for layer in attention)
    return {
        "analog_j_per_sequence": report.energy_j - attention_j,
        "attention_products_j_per_sequence": attention_j,
        "total_j_per_sequence": report.energy_j,
        "crossbar_macs_per_sequence": report.macs - sum(layer.macs for layer in attention),
        "attention_macs_per_sequence": sum(layer.macs for layer in attention),
        "asic_int8_j_per_sequence": report.baseline_energy_j("asic-int8"),
        "gpu_a100_j_per_sequence": report.baseline_energy_j("gpu-a100"),
    }


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown(summary: dict) -> str:
    """The results table: accuracy ideal and over chips, and energy per sequence."""
    a = summary["args"]
    lines = [
        f"# Sorting {a['seq_len']} digits (0-{a['vocab'] - 1}) with a {a['layers']}-layer "
        f"transformer (d={a['d_model']}, {a['heads']} heads) on `{PROFILE}`",
        "",
        f"{a['train_size']} training / {a['test_size']} test sequences, {a['epochs']} epochs "
        f"Adam (lr {a['lr']}, cosine), seed {a['seed']}; chips: {a['chips']} "
        "(`at.Chip(profile, seed=k)`, t = 0 s), mean ± std over chips.",
        "",
        "| trained | token acc. ideal % | token acc. on chips % | sequence acc. ideal % "
        "| sequence acc. on chips % |",
        "|---|---|---|---|---|",
    ]
    names = {"digital": "digital (float32)", "analog": f"hardware-aware (`{PROFILE}`)"}
    for key, label in names.items():
        r = summary[key]
        lines.append(
            f"| {label} | {100 * r['ideal_token_accuracy']:.1f} | "
            f"{_pct(r['chip_accuracy_mean'], r['chip_accuracy_std'])} | "
            f"{100 * r['ideal_sequence_accuracy']:.1f} | "
            f"{_pct(r['chip_sequence_accuracy_mean'], r['chip_sequence_accuracy_std'])} |"
        )
    e = summary["energy"]
    lines += [
        "",
        "'ideal' for the digital model is its float32 accuracy; for the hardware-aware model",
        "the converted model in eval mode (quantisation, no noise).",
        "",
        "| energy per sequence | value |",
        "|---|---|",
        f"| crossbars + periphery (`at.energy.estimate`) | "
        f"{e['analog_j_per_sequence'] * 1e9:.2f} nJ |",
        f"| attention products QK^T, AV + softmax (digital, "
        f"{e['attention_macs_per_sequence']:.0f} MACs; `at.energy.estimate`) | "
        f"{e['attention_products_j_per_sequence'] * 1e9:.2f} nJ |",
        f"| total | {e['total_j_per_sequence'] * 1e9:.2f} nJ |",
        f"| the same work on asic-int8 | {e['asic_int8_j_per_sequence'] * 1e9:.2f} nJ |",
        f"| the same work on gpu-a100 | {e['gpu_a100_j_per_sequence'] * 1e9:.2f} nJ |",
        "",
        f"Wall time {summary['seconds']:.0f} s ({a['threads']} torch thread(s)). Reproduce: "
        "`python experiments/transformer/sequence_task.py --out DIR` (these are its defaults).",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/transformer-sort"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seq-len", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=16384)
    parser.add_argument("--test-size", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chips", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (small tensors: 1)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Train both models, score them on chips, write ``summary.json`` and ``results.md``
    into ``--out``; returns the summary."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train_data = make_data(args.train_size, args.seq_len, args.vocab, args.seed)
    test_data = make_data(args.test_size, args.seq_len, args.vocab, args.seed + 10_000)
    torch.manual_seed(args.seed)
    digital = SortingTransformer(args.vocab, args.seq_len, args.d_model, args.heads, args.layers)
    profile = at.HardwareProfile.preset(PROFILE)
    analog = at.convert(digital, profile, seed=args.seed)  # same initial weights
    digital_losses = train(digital, train_data, args)
    analog_losses = train(analog, train_data, args)
    float_token, float_sequence = accuracies(digital, test_data)
    digital_scores = on_chips(at.convert(digital, profile, seed=args.seed), test_data, args.chips)
    digital_scores["ideal_token_accuracy"] = float_token
    digital_scores["ideal_sequence_accuracy"] = float_sequence
    summary = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "profile": PROFILE,
        "digital": {**digital_scores, "train_loss": digital_losses},
        "analog": {**on_chips(analog, test_data, args.chips), "train_loss": analog_losses},
        "energy": energy(analog, test_data[0][:256]),
        "seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(summary))
    return summary


if __name__ == "__main__":
    print(markdown(main()))
