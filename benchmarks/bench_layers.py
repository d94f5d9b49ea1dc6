"""Speed of the shipped presets against plain PyTorch, as ratios measured in one run.

Workloads, all float32, eager mode, through the public API only
(``at.convert(model, HardwareProfile.preset(name))``):

* ``mlp``      — MLP 784-1024-1024-10, batch 256 (inference: batch 1024);
* ``cnn``      — CIFAR-shaped CNN, four conv3x3-BN-ReLU blocks (32-64-128-128 channels,
  2x2 max-pool after blocks 2-4) and a linear head, batch 128, 3x32x32 inputs;
* ``resnet20`` — CIFAR ResNet-20 (``analogtorch.models.build_resnet_cifar``), batch 128.

A training step is forward + backward + SGD update in ``train()`` mode (fresh hardware
noise every step); inference is a ``no_grad`` forward in ``eval()`` mode. For every
workload the plain model and each preset are timed in interleaved rounds (plain, pcm,
rram, ..., plain, pcm, ...), so drift in machine load hits all of them; each row reports
the median over rounds and its ratio to plain torch from the same rounds. With the
``bench`` extra installed, aihwkit-lightning rows (its standard hardware-aware training
configuration) are measured in the same rounds. ``--peak-memory`` adds the peak memory a
training step adds (activations, temporaries, saved tensors; Linux), per row in a fresh
subprocess.

Run: ``python benchmarks/bench_layers.py [--rounds 5 --steps 5 --threads 2]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peers import lightning_convert
from torch import nn

import analogtorch as at
from analogtorch.models import build_resnet_cifar

PRESETS = ("pcm", "rram", "sram-cim", "seed-4bit-10pct")
WORKLOADS = ("mlp", "cnn", "resnet20")
TRAIN_BATCH = {"mlp": 256, "cnn": 128, "resnet20": 128}
INFER_BATCH = {"mlp": 1024, "cnn": 128, "resnet20": 128}


def cifar_cnn() -> nn.Sequential:
    """Four conv3x3-BN-ReLU blocks (32-64-128-128), max-pool after blocks 2-4, linear head."""
    layers: list[nn.Module] = []
    channels = (3, 32, 64, 128, 128)
    for block, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        layers.append(nn.ReLU())
        if block > 0:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10))


def build(workload: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The plain model of ``workload`` and its input shape (without batch)."""
    torch.manual_seed(0)
    if workload == "mlp":
        return nn.Sequential(
            nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
        ), (784,)
    if workload == "cnn":
        return cifar_cnn(), (3, 32, 32)
    return build_resnet_cifar(20), (3, 32, 32)


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def infer_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return run


def models_for(workload: str, presets: tuple[str, ...], peer: bool = True) -> dict[str, nn.Module]:
    plain, _ = build(workload)
    models: dict[str, nn.Module] = {"plain torch": plain}
    for name in presets:
        models[name] = at.convert(plain, at.HardwareProfile.preset(name))
    peer = lightning_convert(plain) if peer else None
    if peer is not None:
        models["aihwkit-lightning"] = peer
    return models


def timed(fn: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def cases_for(workload: str, models: dict[str, nn.Module]) -> dict[tuple[str, str], Callable]:
    _, shape = build(workload)
    gen = torch.Generator().manual_seed(1)
    cases = {}
    for case, batch in (("train", TRAIN_BATCH[workload]), ("inference", INFER_BATCH[workload])):
        x = torch.rand(batch, *shape, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        for name, model in models.items():
            fn = train_step_fn(model, x, y) if case == "train" else infer_fn(model, x)
            cases[(name, case)] = fn
    return cases


_PEAK_SCRIPT = """
import json, sys
import bench_layers as b
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
workload, name = sys.argv[1], sys.argv[2]
models = b.models_for(workload, tuple(p for p in b.PRESETS if p == name), peer=False)
step = b.cases_for(workload, {name: models[name]})[(name, "train")]
step(); step()
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
step()
print(json.dumps(status("VmHWM") - before))
"""


def step_memory_mb(workload: str, name: str) -> float:
    """Peak resident memory a training step adds on top of the model, its gradients and
    the optimizer (MB), in a fresh interpreter whose allocator returns freed blocks to the
    system (``MALLOC_MMAP_THRESHOLD_``), so resident memory follows the live tensors."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, workload, name],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--peak-memory", action="store_true", help="add peak-memory columns")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{args.threads} threads, eager, {args.rounds} interleaved rounds x {args.steps} "
        "steps, median ms per step; x plain = ratio to plain torch in the same rounds"
    )
    header = f"{'workload':<9} {'case':<10} {'model':<18} {'ms':>8} {'x plain':>8}"
    print(header + (f" {'step MB':>8} {'x plain':>8}" if args.peak_memory else ""))
    peer_missing = False
    for workload in args.workloads:
        models = models_for(workload, tuple(args.presets))
        peer_missing = "aihwkit-lightning" not in models
        cases = cases_for(workload, models)
        for fn in cases.values():  # warm-up: range initialisation, allocator, caches
            timed(fn, 2)
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
        for _ in range(args.rounds):
            for key, fn in cases.items():
                samples[key].append(timed(fn, args.steps))
        plain_mem = {}
        for (name, case), times in samples.items():
            median = statistics.median(times)
            ratio = median / statistics.median(samples[("plain torch", case)])
            line = f"{workload:<9} {case:<10} {name:<18} {median * 1e3:8.2f} {ratio:8.2f}"
            if args.peak_memory and case == "train" and name in (*PRESETS, "plain torch"):
                mem = step_memory_mb(workload, name)
                plain_mem.setdefault(workload, mem)
                line += f" {mem:8.1f} {mem / plain_mem[workload]:8.2f}"
            print(line, flush=True)
    if peer_missing:
        print("aihwkit-lightning not installed (pip install -e '.[bench]'): peer not measured")


if __name__ == "__main__":
    main()
