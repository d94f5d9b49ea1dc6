"""A minimal weight-tied equilibrium network: the reference DEQ for energy estimates.

The full deep-equilibrium family (Anderson/Broyden solvers, implicit backward, hybrid
analog-digital variants) arrives later in :mod:`analogtorch.deq`; this module is only the
smallest DEQ that trains, so the energy model and studies have a fixed architecture to cost.

With ``x`` of shape ``(N, *S)``, ``prod(S) == in_features``::

    u  = W_in flatten(x) + b_in                      (N, width)   digital input injection
    z* = relu(W_core z* + u)                          (N, width)   analog crossbar core
    y  = W_out z* + b_out                             (N, num_classes)

z* is found by fixed-point iteration ``z_{k+1} = relu(W_core z_k + u)`` from ``z_0 = 0``.
Because ReLU is 1-Lipschitz, the map is a contraction with factor ``||W_core||_2 < 1``
(Banach), so the iteration converges geometrically to the unique z*.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

NORM_EPS = 1e-8


class TiedFixedPointNet(nn.Module):
    """Weight-tied fixed-point network trained with Jacobian-free backpropagation.

    The solve runs under :func:`torch.no_grad`; one more differentiable step
    ``z* = relu(core(z) + u)`` then carries the gradient (JFB / phantom gradient: Fung et
    al., "JFB: Jacobian-Free Backpropagation for Implicit Networks", AAAI 2022), which
    replaces the implicit-function inverse ``(I - J)^{-1}`` by the identity.

    Iteration stops when the relative step ``||z_{k+1} - z_k|| / (||z_{k+1}|| + 1e-8)``,
    taken per sample and maximised over the batch, falls below ``tol``, or after
    ``max_iter`` evaluations of ``core`` (the final differentiable step included). After a
    forward, ``last_iterations`` holds that number of core evaluations and
    ``last_converged`` whether ``tol`` was reached; a forward that does not converge warns
    with the residual it reached.

    At construction ``core.weight`` is scaled to spectral norm ``contraction``; an optimizer
    step can break this, so call :meth:`renormalize_` after each step to keep the guarantee.
    The bound is a worst case: with random weights the iteration typically contracts much
    faster than ``contraction`` per step.

    Args:
        in_features: flattened input size.
        width: size of the hidden state z (the crossbar is ``width x width``).
        num_classes: output size.
        tol: relative-step tolerance, > 0.
        max_iter: most core evaluations per forward, >= 1.
        contraction: target spectral norm of ``core.weight``, in (0, 1).
        seed: initialisation seed (global RNG state is left untouched).
    """

    def __init__(
        self,
        in_features: int,
        width: int = 128,
        num_classes: int = 10,
        tol: float = 1e-4,
        max_iter: int = 50,
        contraction: float = 0.9,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < contraction < 1.0:
            raise ValueError(
                f"TiedFixedPointNet: contraction={contraction} must lie in (0, 1) for the "
                "fixed-point map to be a contraction"
            )
        if not tol > 0.0:
            raise ValueError(f"TiedFixedPointNet: tol={tol} must be > 0")
        if max_iter < 1:
            raise ValueError(f"TiedFixedPointNet: max_iter={max_iter} must be >= 1")
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.contraction = float(contraction)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.flatten = nn.Flatten()
            self.inject = nn.Linear(in_features, width)
            self.core = nn.Linear(width, width, bias=False)
            self.head = nn.Linear(width, num_classes)
        self.renormalize_()
        self.last_iterations: int = 0
        self.last_converged: bool = False

    @torch.no_grad()
    def renormalize_(self) -> TiedFixedPointNet:
        """Scale ``core.weight`` in place so that ``||W_core||_2 == contraction``."""
        weight = self.core.weight
        sigma = torch.linalg.matrix_norm(weight, ord=2)
        if not sigma > 0:
            raise ValueError(
                f"TiedFixedPointNet.renormalize_: core.weight has spectral norm {float(sigma)}; "
                "it must be finite and nonzero to be rescaled"
            )
        weight.mul_(self.contraction / sigma)
        return self

    @staticmethod
    def _relative_step(new: Tensor, old: Tensor) -> float:
        """max over samples of ||new - old|| / (||new|| + eps), norms over features."""
        step = torch.linalg.vector_norm(new - old, dim=-1)
        scale = torch.linalg.vector_norm(new, dim=-1) + NORM_EPS
        return float((step / scale).max())

    def equilibrium(self, x: Tensor) -> Tensor:
        """The fixed point ``z*`` of shape ``(N, width)``, differentiable by JFB."""
        u = self.inject(self.flatten(x))
        z = torch.zeros_like(u)
        iterations = 0
        residual = float("inf")
        with torch.no_grad():
            u_detached = u.detach()
            while iterations < self.max_iter - 1 and residual >= self.tol:
                z_next = torch.relu(self.core(z) + u_detached)
                residual = self._relative_step(z_next, z)
                z = z_next
                iterations += 1
        z_star = torch.relu(self.core(z) + u)
        iterations += 1
        if residual >= self.tol:
            residual = self._relative_step(z_star.detach(), z)
        self.last_iterations = iterations
        self.last_converged = residual < self.tol
        if not self.last_converged:
            warnings.warn(
                f"TiedFixedPointNet did not converge: relative residual {residual:.3e} "
                f">= tol {self.tol:.1e} after {iterations} core evaluations "
                f"(max_iter={self.max_iter}); raise max_iter or lower contraction",
                RuntimeWarning,
                stacklevel=2,
            )
        return z_star

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``head(z*)`` of shape ``(N, num_classes)``."""
        return self.head(self.equilibrium(x))

    def extra_repr(self) -> str:
        return f"tol={self.tol}, max_iter={self.max_iter}, contraction={self.contraction}"
