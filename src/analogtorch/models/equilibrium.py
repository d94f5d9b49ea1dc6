"""A minimal weight-tied equilibrium network: the reference DEQ for energy estimates.

The smallest DEQ that trains, so the energy model and studies have a fixed architecture to
cost; it is solved by :mod:`analogtorch.deq` (plain fixed-point iteration, phantom/JFB
gradient). The hybrid analog–digital models are :class:`analogtorch.deq.HybridDEQ`.

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

from ..deq import DEQ, SolverOptions, fixed_point


class _ReluCore(nn.Module):
    """``f(z, u) = relu(W_core z + u)`` (shares ``core`` with the network)."""

    def __init__(self, core: nn.Linear) -> None:
        super().__init__()
        self.core = core

    def state_shape(self, u: Tensor) -> tuple[int, int]:
        return (u.shape[0], self.core.out_features)

    def forward(self, z: Tensor, u: Tensor) -> Tensor:
        return torch.relu(self.core(z) + u)


class TiedFixedPointNet(nn.Module):
    """Weight-tied fixed-point network trained with Jacobian-free backpropagation.

    The solve (:func:`analogtorch.deq.fixed_point.solve`) runs without autograd; when a
    gradient is needed, one more differentiable step ``z* = relu(core(z) + u)`` from the
    solver's iterate then carries it (JFB / phantom gradient: Fung et
    al., "JFB: Jacobian-Free Backpropagation for Implicit Networks", AAAI 2022), which
    replaces the implicit-function inverse ``(I - J)^{-1}`` by the identity.

    Iteration stops when the relative step ``||z_{k+1} - z_k|| / ||z_{k+1}||``, taken per
    sample and maximised over the batch, falls below ``tol``, or after ``max_iter`` solver
    iterations. After a forward, ``last_iterations`` holds the number of core evaluations
    (the solver's, plus the differentiable step when there is one) and
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
        max_iter: most solver iterations per forward, >= 1.
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
        options = SolverOptions(
            tol=self.tol, mode="relative", max_iter=self.max_iter, detect_noise_floor=False
        )
        # Not registered as a submodule: it only wraps ``core``, whose parameters stay under
        # their own names in the state dict.
        solver = DEQ(
            _ReluCore(self.core),
            fixed_point.solve,
            forward_options=options,
            backward="phantom",
            phantom_steps=1,
        )
        object.__setattr__(self, "_deq", solver)
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

    def equilibrium(self, x: Tensor) -> Tensor:
        """The fixed point ``z*`` of shape ``(N, width)``, differentiable by JFB."""
        u = self.inject(self.flatten(x))
        with warnings.catch_warnings():  # this class words its own warning below
            warnings.simplefilter("ignore", RuntimeWarning)
            z_star = self._deq(u)
        stats = self._deq.last_forward_stats
        graph = torch.is_grad_enabled() and z_star.requires_grad
        self.last_iterations = stats.iterations + (1 if graph else 0)  # + the JFB step
        self.last_converged = stats.converged
        if not stats.converged:
            warnings.warn(
                f"TiedFixedPointNet did not converge: relative residual "
                f"{stats.final_residual:.3e} >= tol {self.tol:.1e} after {stats.iterations} "
                f"core evaluations (max_iter={self.max_iter}, stopped: {stats.reason}); "
                "raise max_iter or lower contraction",
                RuntimeWarning,
                stacklevel=2,
            )
        return z_star

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``head(z*)`` of shape ``(N, num_classes)``."""
        return self.head(self.equilibrium(x))

    def extra_repr(self) -> str:
        return f"tol={self.tol}, max_iter={self.max_iter}, contraction={self.contraction}"
