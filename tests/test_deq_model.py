"""DEQ with the shipped solvers: implicit gradients agree with unrolled backprop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.deq import DEQ, SOLVERS, SolverOptions


class TanhCell(nn.Module):
    """f(z, x) = tanh(W z + U x + b) with ‖W‖₂ = 0.7 (a contraction)."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.W = nn.Linear(width, width, bias=False)
        self.U = nn.Linear(dim, width)
        with torch.no_grad():
            self.W.weight.mul_(0.7 / torch.linalg.matrix_norm(self.W.weight, ord=2))
        self.width = width

    def state_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[0], self.width)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(z) + self.U(x))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_implicit_gradient_with_each_solver_matches_unrolled_backprop(name):
    torch.manual_seed(0)
    cell = TanhCell(5, 12).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    tight = SolverOptions(tol=1e-12, mode="absolute", max_iter=300, memory=6)
    grads = {}
    for mode in ("implicit", "unrolled"):
        deq = DEQ(
            cell,
            SOLVERS[name],
            forward_options=tight,
            backward=mode,
            backward_options=SolverOptions(tol=1e-12, mode="absolute", max_iter=300),
        )
        cell.zero_grad()
        deq(x).square().sum().backward()
        grads[mode] = cell.W.weight.grad.clone()
        assert deq.last_forward_stats.converged, deq.last_forward_stats.reason
    rel = (grads["implicit"] - grads["unrolled"]).norm() / grads["unrolled"].norm()
    assert rel < 1e-8


def test_package_exposes_the_deq_family():
    assert {"fixed_point", "anderson", "broyden"} == set(at.deq.SOLVERS)
