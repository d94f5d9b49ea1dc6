"""Speed of the AIS coupling product: dense matmul vs the local (tiled) product.

Workloads: the shipped AIS configs (``experiments/ais/*.yaml``: 64 hidden units, K = 4
segments of 5 RK4 steps, dt = 0.25, local mask of radius 2, 4-bit couplings), oscillator
and Ising, at 14 x 14 and 28 x 28, float32, eager mode. A step is one forward and backward
pass (``system(z).sum().backward()``) on a batch of latents. For every workload the dense
and local products (``coupling_product="dense" | "local"``, the same parameters) are timed
in interleaved rounds (dense, local, dense, local, ...), so drift in machine load hits both;
each row reports the medians over rounds and their ratio from the same rounds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_ais_coupling.py [--rounds 7 --batch 32]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from analogtorch.ais import IsingAIS, OscillatorAIS

SHIPPED = {
    "n_hidden": 64,
    "segments": 4,
    "steps_per_segment": 5,
    "dt": 0.25,
    "mask": "local",
    "mask_kwargs": {"radius": 2},
    "bits": 4,
}
SYSTEMS = {"oscillator": OscillatorAIS, "ising": IsingAIS}
PRODUCTS = ("dense", "local")


def step_seconds(system: torch.nn.Module, z: torch.Tensor) -> float:
    start = time.perf_counter()
    system(z).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[14, 28])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"forward+backward, batch {args.batch}, {args.threads} thread(s), median of rounds")
    print(f"{'system':<12} {'image':>7} {'dense (s)':>10} {'local (s)':>10} {'dense/local':>12}")
    for kind, cls in SYSTEMS.items():
        for size in args.sizes:
            systems = {p: cls((1, size, size), coupling_product=p, **SHIPPED) for p in PRODUCTS}
            systems["local"].load_state_dict(systems["dense"].state_dict())
            z = systems["dense"].sample_latent(args.batch, torch.Generator().manual_seed(0))
            for system in systems.values():
                step_seconds(system, z)  # warm-up
            times: dict[str, list[float]] = {p: [] for p in PRODUCTS}
            for _ in range(args.rounds):
                for product, system in systems.items():
                    times[product].append(step_seconds(system, z))
            dense, local = (statistics.median(times[p]) for p in PRODUCTS)
            image = f"{size}x{size}"
            print(f"{kind:<12} {image:>7} {dense:>10.4f} {local:>10.4f} {dense / local:>12.2f}")


if __name__ == "__main__":
    main()
