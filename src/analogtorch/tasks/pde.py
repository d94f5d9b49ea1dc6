"""Steady states of 1-D PDEs on (0, 1) with u(0) = u(1) = 0 (nondimensional length).

Heat / Poisson: the steady state of ``u_t = κ u'' + s`` solves

    −κ u''(x) = s(x),

discretised with second-order central differences on ``n`` interior points ``x_i = i h``,
``h = 1/(n + 1)``: ``(κ/h²)(−u_{i−1} + 2u_i − u_{i+1}) = s_i``. The scheme is exact at the grid
points for quadratic ``u`` (constant ``s``), since the central difference of a quadratic is exact.

Viscous Burgers (steady): ``−ν u'' + u u' = s`` with the same grid, ``u'`` by central
differences, solved by Newton's method from the Poisson solution.

Sources are random smooth fields ``s(x) = A Σ_{k=1}^{K} a_k sin(kπx + φ_k)`` with
``a_k ~ N(0, 1)/k`` and phases ``φ_k ~ U(0, 2π)``; inputs are ``s`` on the grid, targets ``u``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.linalg import solve_banded
from torch import Tensor

from analogtorch.tasks.base import (
    TaskData,
    check_dtype,
    check_float,
    check_int,
    generator,
    register_task,
)


def grid(n_grid: int) -> Tensor:
    """Interior grid points ``x_i = i/(n_grid + 1)``, i = 1..n_grid, float64."""
    return torch.arange(1, n_grid + 1, dtype=torch.float64) / (n_grid + 1)


def laplacian_matrix(n_grid: int, kappa: float = 1.0) -> Tensor:
    """Dense (n, n) float64 matrix of ``−κ d²/dx²``: ``(κ/h²) tridiag(−1, 2, −1)``."""
    h = 1.0 / (n_grid + 1)
    eye = torch.eye(n_grid, dtype=torch.float64)
    off = torch.diag(torch.ones(n_grid - 1, dtype=torch.float64), 1)
    return (kappa / h**2) * (2.0 * eye - off - off.T)


def solve_poisson(source: Tensor, kappa: float = 1.0) -> Tensor:
    """Solve ``−κ u'' = s`` for a batch of grid sources (N, n): exact tridiagonal solve, float64."""
    n = source.shape[-1]
    h = 1.0 / (n + 1)
    bands = np.zeros((3, n))
    bands[0, 1:] = bands[2, :-1] = -kappa / h**2
    bands[1, :] = 2.0 * kappa / h**2
    rhs = source.detach().double().cpu().numpy().reshape(-1, n).T
    u = solve_banded((1, 1), bands, rhs, check_finite=True)
    return torch.from_numpy(np.ascontiguousarray(u.T)).reshape(source.shape)


def central_difference_matrix(n_grid: int) -> Tensor:
    """Dense (n, n) float64 matrix of ``d/dx`` by central differences (zero Dirichlet)."""
    h = 1.0 / (n_grid + 1)
    off = torch.diag(torch.ones(n_grid - 1, dtype=torch.float64), 1)
    return (off - off.T) / (2.0 * h)


def burgers_residual(u: Tensor, source: Tensor, nu: float) -> Tensor:
    """``−ν u'' + u u' − s`` on the grid (central differences), batched (N, n), float64."""
    h = 1.0 / (u.shape[-1] + 1)
    padded = torch.nn.functional.pad(u.double(), (1, 1))  # u(0) = u(1) = 0
    left, mid, right = padded[..., :-2], padded[..., 1:-1], padded[..., 2:]
    diffusion = (nu / h**2) * (2.0 * mid - left - right)
    return diffusion + mid * (right - left) / (2.0 * h) - source.double()


def solve_tridiagonal(lower: Tensor, diag: Tensor, upper: Tensor, rhs: Tensor) -> Tensor:
    """Batched Thomas algorithm: solve ``l_i x_{i−1} + d_i x_i + u_i x_{i+1} = r_i`` (N, n).

    ``lower[:, 0]`` and ``upper[:, -1]`` are ignored. No pivoting: meant for the (nearly)
    diagonally dominant Jacobians here; a non-finite result is reported by the caller's check.
    """
    n = diag.shape[-1]
    c = torch.empty_like(diag)
    d = torch.empty_like(rhs)
    c[:, 0] = upper[:, 0] / diag[:, 0]
    d[:, 0] = rhs[:, 0] / diag[:, 0]
    for i in range(1, n):
        pivot = diag[:, i] - lower[:, i] * c[:, i - 1]
        c[:, i] = upper[:, i] / pivot
        d[:, i] = (rhs[:, i] - lower[:, i] * d[:, i - 1]) / pivot
    x = torch.empty_like(rhs)
    x[:, -1] = d[:, -1]
    for i in range(n - 2, -1, -1):
        x[:, i] = d[:, i] - c[:, i] * x[:, i + 1]
    return x


def solve_burgers(source: Tensor, nu: float, *, tol: float = 1e-10, max_iter: int = 50) -> Tensor:
    """Solve steady viscous Burgers ``−ν u'' + u u' = s`` (batch (N, n)) by Newton's method.

    Starts from the Poisson solution with ``κ = ν``; each step solves the tridiagonal system
    ``J δ = F`` (``J = ν L + diag(D u) + diag(u) D``) and halves the step until ``max|F|``
    decreases. Stops when ``max|F| ≤ tol · max(1, max|s|)``; raises ``RuntimeError`` otherwise.
    """
    n = source.shape[-1]
    h = 1.0 / (n + 1)
    s = source.detach().double().reshape(-1, n)
    u = solve_poisson(s, nu)
    target = tol * max(1.0, float(s.abs().max()) if s.numel() else 0.0)
    residual = burgers_residual(u, s, nu)
    norm = float(residual.abs().max()) if s.numel() else 0.0
    for _ in range(max_iter):
        if norm <= target:
            return u.reshape(source.shape)
        padded = torch.nn.functional.pad(u, (1, 1))
        lower = -nu / h**2 - u / (2.0 * h)
        upper = -nu / h**2 + u / (2.0 * h)
        diag = 2.0 * nu / h**2 + (padded[:, 2:] - padded[:, :-2]) / (2.0 * h)
        delta = solve_tridiagonal(lower, diag, upper, residual)
        scale = 1.0
        while True:
            trial = u - scale * delta
            trial_residual = burgers_residual(trial, s, nu)
            trial_norm = float(trial_residual.abs().max())
            if trial_norm < norm or scale < 1e-4:
                break
            scale *= 0.5
        u, residual, norm = trial, trial_residual, trial_norm
    if norm <= target:
        return u.reshape(source.shape)
    raise RuntimeError(
        f"Newton's method for Burgers did not converge: max residual {norm:.3e} > {target:.3e} "
        f"after max_iter={max_iter} iterations (try a larger nu={nu} or a smaller source)"
    )


def smooth_sources(
    count: int, n_grid: int, gen: torch.Generator, n_modes: int = 5, amplitude: float = 1.0
) -> Tensor:
    """``count`` random smooth sources on the grid (count, n_grid), float64 (module docstring)."""
    k = torch.arange(1, n_modes + 1, dtype=torch.float64)
    coeff = torch.randn(count, n_modes, generator=gen, dtype=torch.float64) / k
    phase = 2.0 * math.pi * torch.rand(count, n_modes, generator=gen, dtype=torch.float64)
    angles = math.pi * k[None, :, None] * grid(n_grid)[None, None, :] + phase[:, :, None]
    return amplitude * (coeff[:, :, None] * torch.sin(angles)).sum(dim=1)


def _steady_task(
    name: str,
    solve: Callable[[Tensor], Tensor],
    coefficients: dict[str, float],
    equation: str,
    n_train: int,
    n_test: int,
    seed: int,
    n_grid: int,
    n_modes: int,
    amplitude: float,
    dtype: torch.dtype,
) -> TaskData:
    """Regression ``s ↦ u = solve(s)`` on smooth random sources (float64 solve): the shared
    validation, data and ``info`` of the steady 1-D PDE tasks."""
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    n_grid, n_modes = check_int("n_grid", n_grid, minimum=2), check_int("n_modes", n_modes)
    amplitude = check_float("amplitude", amplitude)
    dtype = check_dtype(dtype)
    s = smooth_sources(n_train + n_test, n_grid, generator(seed), n_modes, amplitude)
    s = s.to(dtype).double()
    u = solve(s)
    info: dict[str, object] = {
        **coefficients,
        "n_grid": n_grid,
        "h": 1.0 / (n_grid + 1),
        "n_modes": n_modes,
        "amplitude": amplitude,
        "grid": grid(n_grid).tolist(),
        "equation": equation,
    }
    return TaskData.regression(name, s.to(dtype), u.to(dtype), n_train, info)


@register_task("heat")
def heat_equilibrium(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    n_grid: int = 32,
    kappa: float = 1.0,
    *,
    n_modes: int = 5,
    amplitude: float = 10.0,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``s ↦ u`` with ``−κ u'' = s``, u(0) = u(1) = 0, on ``n_grid`` interior points.

    The default ``amplitude`` 10 makes ``u`` of order 1 for κ = 1.
    """
    kappa = check_float("kappa", kappa)
    return _steady_task(
        "heat",
        lambda source: solve_poisson(source, kappa),
        {"kappa": kappa},
        "-kappa u'' = s on (0,1), u(0)=u(1)=0, 2nd-order finite differences",
        n_train,
        n_test,
        seed,
        n_grid,
        n_modes,
        amplitude,
        dtype,
    )


@register_task("burgers")
def burgers_equilibrium(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    n_grid: int = 32,
    nu: float = 0.1,
    *,
    n_modes: int = 5,
    amplitude: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``s ↦ u`` with steady viscous Burgers ``−ν u'' + u u' = s``, zero Dirichlet.

    The default ``amplitude`` 1 with ν = 0.1 gives ``u`` of order 1 (Reynolds number ~10).
    """
    nu = check_float("nu", nu)
    return _steady_task(
        "burgers",
        lambda source: solve_burgers(source, nu),
        {"nu": nu},
        "-nu u'' + u u' = s on (0,1), u(0)=u(1)=0, central differences, Newton",
        n_train,
        n_test,
        seed,
        n_grid,
        n_modes,
        amplitude,
        dtype,
    )
