"""DEQ train step: analogtorch.deq vs torchdeq on the same model and tolerance.

Model: z* = tanh(W z + U x) with hidden 512 (‖W‖₂ = 0.9 at start), batch 256, input 512;
forward Anderson (memory 5) to a relative residual of 1e-4 within 40 iterations; implicit
(IFT) backward solved by Anderson to the same tolerance. One train step = forward solve,
loss, backward, SGD step. Prints the median step time of each over interleaved rounds,
their ratio, and the forward/backward iteration counts (backward iterations are counted
as vector-Jacobian products through W, with a backward hook, for both libraries).

Both libraries get the same closure structure: the input injection ``U x`` does not depend
on ``z``, so it is computed once per step, with gradients, outside the fixed-point map, and
the map is ``z ↦ tanh(W z + inj)`` (as in torchdeq's own examples, ``f = lambda z:
cell(z, x_inj)``); the gradient reaches ``U`` through ``inj`` on both sides.

Run: ``python benchmarks/bench_deq.py`` (needs ``pip install torchdeq``; the ``bench`` extra).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from analogtorch.deq import DEQ, SolverOptions, anderson

HIDDEN, BATCH, TOL, MAX_ITER, ROUNDS = 512, 256, 1e-4, 40, 15


class Cell(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.U = nn.Linear(HIDDEN, HIDDEN)
        with torch.no_grad():
            self.W.weight.mul_(0.9 / torch.linalg.matrix_norm(self.W.weight, ord=2))
        self.vjps = 0
        self.W.register_full_backward_hook(self._count)

    def _count(self, *args: object) -> None:
        self.vjps += 1

    def state_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[0], HIDDEN)

    def inject(self, x: torch.Tensor) -> torch.Tensor:
        """The input injection ``U x``, independent of the state: computed once per step."""
        return self.U(x)

    def forward(self, z: torch.Tensor, inj: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(z) + inj)


def ours(cell: Cell, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    options = SolverOptions(tol=TOL, mode="relative", max_iter=MAX_ITER, memory=5)
    deq = DEQ(cell, anderson.solve, forward_options=options, backward="implicit")
    z = deq(cell.inject(x))  # DEQ's map is z ↦ cell(z, inj)
    return z, deq.last_forward_stats.iterations


def theirs(cell: Cell, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    from torchdeq import get_deq

    deq = get_deq(
        f_solver="anderson",
        b_solver="anderson",
        f_max_iter=MAX_ITER,
        b_max_iter=MAX_ITER,
        f_tol=TOL,
        b_tol=TOL,
        f_stop_mode="rel",
        b_stop_mode="rel",
        ift=True,
    )
    inj = cell.inject(x)
    z_out, info = deq(lambda z: cell(z, inj), torch.zeros(BATCH, HIDDEN))
    return z_out[-1], int(info["nstep"].max())


def step(run, cell: Cell, x: torch.Tensor, target: torch.Tensor) -> tuple[float, int, int]:
    opt = torch.optim.SGD(cell.parameters(), lr=1e-3)
    start = time.perf_counter()
    z, forward_iterations = run(cell, x)
    cell.vjps = 0
    loss = (z - target).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start, forward_iterations, cell.vjps


def main() -> None:
    torch.manual_seed(0)
    x, target = torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN) * 0.1
    cells = {"analogtorch": Cell(), "torchdeq": Cell()}
    cells["torchdeq"].load_state_dict(cells["analogtorch"].state_dict())
    runs = {"analogtorch": ours, "torchdeq": theirs}
    times: dict[str, list[float]] = {name: [] for name in runs}
    iterations: dict[str, tuple[int, int]] = {}
    for round_ in range(ROUNDS + 2):
        for name, run in runs.items():
            state = cells[name].state_dict()
            elapsed, forward_iterations, backward_vjps = step(run, cells[name], x, target)
            cells[name].load_state_dict(state)  # same weights every round
            if round_ >= 2:  # warm-up
                times[name].append(elapsed)
                iterations[name] = (forward_iterations, backward_vjps)
    print(
        f"DEQ train step, hidden {HIDDEN}, batch {BATCH}, Anderson, implicit backward, "
        f"rel tol {TOL}, {torch.get_num_threads()} threads, median of {ROUNDS}"
    )
    for name in runs:
        fwd, bwd = iterations[name]
        print(
            f"  {name:12s} {1e3 * statistics.median(times[name]):8.1f} ms   "
            f"forward iterations {fwd:3d}   backward VJPs {bwd:3d}"
        )
    ratio = statistics.median(times["analogtorch"]) / statistics.median(times["torchdeq"])
    print(f"  time ratio analogtorch / torchdeq: {ratio:.2f}")


if __name__ == "__main__":
    main()
