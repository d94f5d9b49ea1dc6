"""Physics terms ``P(z, u)`` of a PI-DEQ core (:class:`~analogtorch.deq.PICore`), one per task.

Each term is one explicit time step of the task's governing equation, acting on the first
``n`` entries of the state (the field on the task's grid, or the system's state vector) and
scaled by a ``coupling`` ``c``; the other state entries get 0. Each declares ``lipschitz``,
its Lipschitz constant in ``z`` (2-norm), which :class:`~analogtorch.deq.PICore` adds to
the crossbar's in the contraction bound ``L_σ (L_dev ‖W_z‖ + L_P) ≤ γ``; so ``L_P < γ``
is needed, and ``c`` is what keeps it there (the undamped steps have ``‖M‖₂`` close to 1).

* ``heat``: ``P = c (M z + Δt u)`` with ``M = I + r Δ_h`` the explicit Euler step of
  ``u_t = κ u'' + s`` (``Δ_h = tridiag(1, −2, 1)``, ``r = κ Δt / h²``, zero Dirichlet);
  ``L_P = c max_k |1 − 4 r sin²(kπ / (2(n + 1)))|`` (the eigenvalues of the symmetric ``M``).
* ``burgers``: ``P = c (M z − Δt z ⊙ D z + Δt u)``, ``M`` with ``κ = ν``, ``D`` the central
  difference. The advection is not globally Lipschitz: on the state box ``|z_i| ≤ a``
  (``a = 1`` for ``tanh``) its Jacobian ``diag(D z) + diag(z) D`` has 2-norm at most
  ``a/h + a cos(π/(n + 1))/h``, so ``L_P = c (‖M‖₂ + Δt a (1 + cos(π/(n + 1)))/h)``.
* ``linear``: ``P = c ((I + Δt A) z + Δt u)``, the Euler step of ``ż = A z + B x`` (``u``
  stands for ``B x``); ``L_P = c ‖I + Δt A‖₂`` (largest singular value, computed once).

:func:`equation_residual` is the physics-consistency metric: the residual of the governing
equation on a predicted state, relative to its forcing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..tasks.pde import burgers_residual, central_difference_matrix, laplacian_matrix


class ExplicitStep(nn.Module):
    """``P(z, u) = c [M z_{:n} + Δt u_{:n} + N(z_{:n}), 0]`` with ``M`` an (n, n) step
    matrix, ``N`` an optional nonlinear term and ``lipschitz`` given by the subclass.

    Shapes: ``z``, ``u`` (batch, width ≥ n) → (batch, width)."""

    def __init__(self, step_matrix: torch.Tensor, dt: float, coupling: float, width: int):
        super().__init__()
        n = step_matrix.shape[0]
        if step_matrix.shape != (n, n):
            raise ValueError(f"step_matrix shape {tuple(step_matrix.shape)}: must be square")
        if width < n:
            raise ValueError(f"width={width}: the core must hold the physics state (n = {n})")
        if not coupling > 0:
            raise ValueError(f"coupling={coupling}: must be > 0")
        if not dt > 0:
            raise ValueError(f"dt={dt}: the time step must be > 0")
        self.register_buffer("step_matrix", step_matrix.float())
        self.n, self.width, self.dt, self.coupling = n, width, float(dt), float(coupling)

    @property
    def lipschitz(self) -> float:
        raise NotImplementedError

    def nonlinear(self, field: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(field)

    def forward(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        field = z[:, : self.n]
        step = field @ self.step_matrix.T + self.dt * u[:, : self.n] + self.nonlinear(field)
        return nn.functional.pad(self.coupling * step, (0, self.width - self.n))

    def extra_repr(self) -> str:
        return f"n={self.n}, dt={self.dt:.3g}, coupling={self.coupling}, L={self.lipschitz:.4g}"


def heat_step_norm(n_grid: int, courant: float) -> float:
    """``‖I + r Δ_h‖₂ = max_k |1 − 4 r sin²(kπ / (2(n + 1)))|``, k = 1..n (exact)."""
    k = torch.arange(1, n_grid + 1, dtype=torch.float64)
    eig = 1.0 - 4.0 * courant * torch.sin(k * math.pi / (2 * (n_grid + 1))) ** 2
    return float(eig.abs().max())


class HeatStep(ExplicitStep):
    """Explicit Euler step of ``u_t = κ u'' + s`` (module docstring, ``heat``).

    Args:
        n_grid: interior grid points (``h = 1/(n_grid + 1)``, nondimensional length).
        width: core state size (≥ ``n_grid``).
        kappa: diffusivity κ (length²/time).
        courant: ``r = κ Δt / h²`` (explicit stability needs ``r ≤ 1/2``).
        coupling: ``c`` in ``P = c (M z + Δt u)``.
    """

    def __init__(
        self,
        n_grid: int,
        width: int,
        *,
        kappa: float = 1.0,
        courant: float = 0.25,
        coupling: float = 0.5,
    ):
        if not 0 < courant <= 0.5:
            raise ValueError(f"courant={courant}: r = κΔt/h² must be in (0, 0.5] (stability)")
        h = 1.0 / (n_grid + 1)
        dt = courant * h**2 / kappa
        step = torch.eye(n_grid, dtype=torch.float64) - dt * laplacian_matrix(n_grid, kappa)
        super().__init__(step, dt, coupling, width)
        self.courant = float(courant)

    @property
    def lipschitz(self) -> float:
        return self.coupling * heat_step_norm(self.n, self.courant)


class BurgersStep(HeatStep):
    """Explicit Euler step of ``u_t = ν u'' − u u' + s`` (module docstring, ``burgers``),
    with its Lipschitz bound on the state box ``|z_i| ≤ state_bound``."""

    def __init__(
        self,
        n_grid: int,
        width: int,
        *,
        nu: float = 0.1,
        courant: float = 0.25,
        coupling: float = 0.5,
        state_bound: float = 1.0,
    ):
        super().__init__(n_grid, width, kappa=nu, courant=courant, coupling=coupling)
        if not state_bound > 0:
            raise ValueError(f"state_bound={state_bound}: must be > 0")
        self.register_buffer("difference", central_difference_matrix(n_grid).float())
        self.state_bound = float(state_bound)

    def nonlinear(self, field: torch.Tensor) -> torch.Tensor:
        return -self.dt * field * (field @ self.difference.T)

    @property
    def lipschitz(self) -> float:
        h = 1.0 / (self.n + 1)
        advection = self.state_bound * (1.0 + math.cos(math.pi / (self.n + 1))) / h
        return self.coupling * (heat_step_norm(self.n, self.courant) + self.dt * advection)


class LinearSystemStep(ExplicitStep):
    """Explicit Euler step ``(I + Δt A) z + Δt u`` of ``ż = A z + B x`` (``dt`` in the
    system's time unit), ``L_P = c ‖I + Δt A‖₂``."""

    def __init__(self, a: torch.Tensor, width: int, *, dt: float = 0.1, coupling: float = 0.5):
        a = torch.as_tensor(a, dtype=torch.float64)
        step = torch.eye(a.shape[0], dtype=torch.float64) + dt * a
        super().__init__(step, dt, coupling, width)
        self._step_norm = float(torch.linalg.svdvals(step)[0])

    @property
    def lipschitz(self) -> float:
        return self.coupling * self._step_norm


PhysicsFactory = Callable[[dict, int, float], ExplicitStep]

PHYSICS: dict[str, PhysicsFactory] = {
    "heat": lambda info, width, c: HeatStep(
        int(info["n_grid"]), width, kappa=float(info["kappa"]), coupling=c
    ),
    "burgers": lambda info, width, c: BurgersStep(
        int(info["n_grid"]), width, nu=float(info["nu"]), coupling=c
    ),
    "linear": lambda info, width, c: LinearSystemStep(
        torch.tensor(info["A"], dtype=torch.float64), width, coupling=c
    ),
}


def make_physics(name: str, info: dict, width: int, coupling: float = 0.5) -> ExplicitStep:
    """The physics term ``name`` for a task with constants ``info`` (``TaskData.info``)."""
    if name not in PHYSICS:
        raise ValueError(f"physics={name!r}: unknown; known: {', '.join(sorted(PHYSICS))}")
    return PHYSICS[name](info, width, coupling)


def equation_residual(name: str, info: dict, x: torch.Tensor, prediction: torch.Tensor) -> float:
    """Physics consistency: ``‖R(ŷ, x)‖₂ / ‖forcing‖₂`` over the batch, with ``R`` the
    governing equation's residual on the predicted state ``ŷ``: ``−κ Δ_h ŷ − s`` (heat),
    ``−ν ŷ'' + ŷ ŷ' − s`` (burgers), ``A ŷ + B x`` (linear; forcing ``B x``)."""
    x, y = x.double(), prediction.double().reshape(x.shape[0], -1)
    if name == "heat":
        forcing = x
        residual = y @ laplacian_matrix(y.shape[1], float(info["kappa"])).T - x
    elif name == "burgers":
        forcing, residual = x, burgers_residual(y, x, float(info["nu"]))
    elif name == "linear":
        forcing = x @ torch.tensor(info["B"], dtype=torch.float64).T
        residual = y @ torch.tensor(info["A"], dtype=torch.float64).T + forcing
    else:
        raise ValueError(f"physics={name!r}: unknown; known: {', '.join(sorted(PHYSICS))}")
    return float(torch.linalg.vector_norm(residual) / torch.linalg.vector_norm(forcing))
