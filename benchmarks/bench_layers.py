"""Speed of hardware-aware (HWA) analog layers vs plain PyTorch, as ratios from one run.

Model: MLP 784-1024-1024-10, batch 256, float32. Measures a training step (forward,
backward, SGD update) and inference (no_grad forward) of the plain model and of the same
model converted with a training profile: 8-bit DAC and ADC, Gaussian weight noise and
output noise (tiles of 512 rows, per-tile ADC). Rounds are interleaved (plain, analog,
plain, ...) so drift in machine load hits both; each reports the median step time.
With the ``bench`` extra installed, aihwkit-lightning at the equivalent configuration is
measured in the same rounds.

Both models are also timed under ``torch.compile`` (unless ``--no-compile``): analog
layers are plain ``nn.Linear`` subclasses, so Inductor fuses the converter arithmetic.

Run: ``python benchmarks/bench_layers.py [--rounds 7 --steps 10 --threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import analogtorch as at

TRAINING_PROFILE = at.HardwareProfile(
    name="bench-hwa",
    dac_bits=8,
    adc_bits=8,
    adc_range=12.0,
    prog_noise_std=0.03,
    output_noise_std=0.04,
    tile_rows=512,
    tile_cols=512,
)


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step() -> None:
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


def aihwkit_lightning_model(model: nn.Module) -> nn.Module | None:
    """The same MLP under aihwkit-lightning at the equivalent config, if installed."""
    try:
        from aihwkit_lightning.nn.conversion import convert_to_analog
        from aihwkit_lightning.simulator.configs import (
            TorchInferenceRPUConfig,
            WeightNoiseInjectionType,
        )
    except ImportError:
        return None
    cfg = TorchInferenceRPUConfig()
    cfg.forward.inp_res = 2**8 - 2
    cfg.forward.out_res = 2**8 - 2
    cfg.forward.out_noise = TRAINING_PROFILE.output_noise_std
    cfg.forward.out_bound = TRAINING_PROFILE.adc_range
    cfg.modifier.noise_type = WeightNoiseInjectionType.ADD_NORMAL_PER_CHANNEL
    cfg.modifier.std_dev = TRAINING_PROFILE.prog_noise_std
    cfg.mapping.max_input_size = TRAINING_PROFILE.tile_rows
    cfg.pre_post.input_range.enable = True
    return convert_to_analog(model, cfg)


def timed(fn: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(256, 784)
    y = torch.randint(0, 10, (256,))
    plain = mlp()
    analog = at.convert(plain, TRAINING_PROFILE)
    models = {("plain torch", "eager"): plain, ("analogtorch HWA", "eager"): analog}
    peer = aihwkit_lightning_model(plain)
    if peer is not None:
        models[("aihwkit-lightning", "eager")] = peer
    if not args.no_compile:
        models[("plain torch", "compiled")] = torch.compile(plain)
        models[("analogtorch HWA", "compiled")] = torch.compile(analog)
    cases = {}
    for (name, mode), model in models.items():
        cases[(name, mode, "train step")] = train_step_fn(model, x, y)
        cases[(name, mode, "inference")] = infer_fn(model, x)
    for fn in cases.values():  # warm-up (compilation, range initialisation)
        timed(fn, 2)
    samples: dict[tuple[str, str, str], list[float]] = {key: [] for key in cases}
    for _ in range(args.rounds):
        for key, fn in cases.items():
            samples[key].append(timed(fn, args.steps))
    print(
        f"MLP 784-1024-1024-10, batch 256, {args.threads} threads, "
        f"{args.rounds} rounds x {args.steps} steps, median; ratios against plain torch "
        "in the same mode (eager or torch.compile)"
    )
    print(f"{'model':<20} {'mode':<9} {'case':<11} {'ms/step':>8} {'x plain':>8}")
    for (name, mode, case), times in sorted(samples.items(), key=lambda kv: kv[0][2]):
        median = statistics.median(times)
        ratio = median / statistics.median(samples[("plain torch", mode, case)])
        print(f"{name:<20} {mode:<9} {case:<11} {median * 1e3:8.2f} {ratio:8.2f}")
    if peer is None:
        print("aihwkit-lightning not installed (pip install -e '.[bench]'): peer not measured")


if __name__ == "__main__":
    main()
