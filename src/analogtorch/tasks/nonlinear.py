"""Equilibria of a contractive tanh network: the canonical DEQ layer as a target.

The system (dimensionless) is

    ż = −z + tanh(W z + U x + b),

whose equilibria solve ``z = tanh(W z + U x + b)``. ``tanh`` is 1-Lipschitz, so with
``‖W‖₂ = γ < 1`` the map is a contraction with factor ``γ`` (Banach): the equilibrium exists,
is unique, and fixed-point iteration converges to it geometrically, ``‖z_k − z*‖ ≤ γ^k ‖z_0 − z*‖``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from analogtorch.tasks.base import (
    TaskData,
    check_dtype,
    check_float,
    check_int,
    generator,
    register_task,
    tolist,
)


def tanh_equilibrium(
    w: Tensor,
    u: Tensor,
    bias: Tensor,
    x: Tensor,
    *,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> Tensor:
    """Solve ``z = tanh(W z + U x + b)`` for a batch ``x`` (N, m) by fixed-point iteration.

    Runs in float64 from ``z = 0`` until ``max |z_{k+1} − z_k| ≤ tol`` over the whole batch.
    Raises ``RuntimeError`` when that does not happen within ``max_iter`` iterations (the map is
    not contractive, e.g. ``‖W‖₂ ≥ 1``).
    """
    check_float("tol", tol)
    check_int("max_iter", max_iter)
    w64, drive = w.double(), x.double() @ u.double().T + bias.double()
    z = torch.zeros_like(drive)
    step = math.inf
    for _ in range(max_iter):
        z_next = torch.tanh(z @ w64.T + drive)
        step = float((z_next - z).abs().max()) if z.numel() else 0.0
        z = z_next
        if step <= tol:
            return z
    raise RuntimeError(
        f"fixed-point iteration did not converge: last step {step:.3e} > tol={tol} after "
        f"max_iter={max_iter} iterations (is ‖W‖₂ < 1?)"
    )


COUPLINGS = ("gaussian", "orthogonal", "symmetric")


def _coupling(kind: str, n: int, gamma: float, gen: torch.Generator) -> Tensor:
    """An ``n × n`` feedback matrix with ``‖W‖₂ = gamma`` exactly (float64)."""
    g = torch.randn(n, n, generator=gen, dtype=torch.float64)
    if kind == "gaussian":
        return g * (gamma / torch.linalg.matrix_norm(g, ord=2))
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed orthogonal
    if kind == "orthogonal":
        return gamma * q
    if kind == "symmetric":
        eig = gamma * torch.rand(n, generator=gen, dtype=torch.float64)
        eig[0] = gamma
        return (q * eig) @ q.T
    raise ValueError(f"coupling={kind!r}; expected one of {COUPLINGS}")


@register_task("nonlinear")
def nonlinear_system(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    state_dim: int = 16,
    input_dim: int = 8,
    *,
    spectral_norm: float = 0.8,
    coupling: str = "gaussian",
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``x ↦ z*`` with ``z* = tanh(W z* + U x + b)``.

    ``W`` Gaussian rescaled to ``‖W‖₂ = spectral_norm`` exactly (default 0.8); ``U`` entries
    ``N(0, 1/m)``, ``b`` entries ``N(0, 0.1²)``; inputs ``x ~ N(0, I_m)``. The target is found in
    float64 to a step of 1e-12. ``info`` holds ``W``, ``U``, ``b`` as lists.
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    n, m = check_int("state_dim", state_dim), check_int("input_dim", input_dim)
    gamma = check_float("spectral_norm", spectral_norm, high=1.0)
    dtype = check_dtype(dtype)
    gen = generator(seed)
    w = _coupling(coupling, n, gamma, gen)
    u = torch.randn(n, m, generator=gen, dtype=torch.float64) / math.sqrt(m)
    bias = 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    x = torch.randn(n_train + n_test, m, generator=gen, dtype=torch.float64).to(dtype)
    z = tanh_equilibrium(w, u, bias, x).to(dtype)
    info: dict[str, object] = {
        "W": tolist(w),
        "U": tolist(u),
        "b": tolist(bias),
        "spectral_norm": gamma,
        "equation": "dz/dt = -z + tanh(W z + U x + b); target z* = tanh(W z* + U x + b)",
    }
    return TaskData.regression("nonlinear", x, z, n_train, info)
