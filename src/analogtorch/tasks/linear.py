"""Equilibria of a stable linear system: the simplest DEQ target.

The system (dimensionless time and units) is

    ż = A z + B x,        z ∈ R^n, x ∈ R^m,

with ``A`` Hurwitz, so for a constant input the state settles at ``z* = −A⁻¹ B x``. ``A`` is
built as ``A = −c I + S + E`` with ``S`` skew-symmetric and ``‖E‖₂ ≤ c / 2``: the symmetric part
of ``A`` is ``−c I + (E + Eᵀ)/2 ≼ −(c/2) I``, so every eigenvalue has real part ``≤ −c/2 < 0``.
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


def random_hurwitz(
    state_dim: int, gen: torch.Generator, decay: float = 1.0, skew: float = 1.0
) -> Tensor:
    """A (state_dim, state_dim) float64 matrix whose eigenvalues all have real part ≤ −decay/2.

    ``A = −decay·I + skew·(G − Gᵀ)/(2√n) + E`` with ``E`` Gaussian rescaled to
    ``‖E‖₂ = decay / 2`` (exact spectral norm).
    """
    n = state_dim
    g = torch.randn(n, n, generator=gen, dtype=torch.float64)
    e = torch.randn(n, n, generator=gen, dtype=torch.float64)
    e = e * (0.5 * decay / torch.linalg.matrix_norm(e, ord=2))
    s = skew * (g - g.T) / (2.0 * math.sqrt(n))
    return -decay * torch.eye(n, dtype=torch.float64) + s + e


def linear_equilibrium(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """``z* = −A⁻¹ B x`` for a batch ``x`` (N, m), computed in float64 by a linear solve."""
    a64, b64, x64 = a.double(), b.double(), x.double()
    return -torch.linalg.solve(a64, b64 @ x64.T).T


@register_task("linear")
def linear_system(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    state_dim: int = 16,
    input_dim: int = 8,
    *,
    decay: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``x ↦ z* = −A⁻¹ B x`` for ``ż = A z + B x`` with a seeded Hurwitz ``A``.

    Inputs ``x ~ N(0, I_m)``; ``B`` has entries ``N(0, 1/m)``. ``decay`` = ``c`` above (1/time
    unit). ``info`` holds ``A``, ``B`` (lists) and the largest eigenvalue real part.
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    n, m = check_int("state_dim", state_dim), check_int("input_dim", input_dim)
    decay = check_float("decay", decay)
    dtype = check_dtype(dtype)
    gen = generator(seed)
    a = random_hurwitz(n, gen, decay=decay)
    b = torch.randn(n, m, generator=gen, dtype=torch.float64) / math.sqrt(m)
    x = torch.randn(n_train + n_test, m, generator=gen, dtype=torch.float64).to(dtype)
    z = linear_equilibrium(a, b, x).to(dtype)
    max_real = float(torch.linalg.eigvals(a).real.max())
    info: dict[str, object] = {
        "A": tolist(a),
        "B": tolist(b),
        "decay": decay,
        "max_real_eigenvalue": max_real,
        "equation": "dz/dt = A z + B x; target z* = -A^-1 B x",
    }
    return TaskData.regression("linear", x, z, n_train, info)
