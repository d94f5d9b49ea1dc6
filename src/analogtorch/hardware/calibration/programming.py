"""Programming noise (``fit_programming``).

``G - G_target ~ N(0, (g_max sigma(x))^2)`` with ``sigma(x) = sum_k c_k x^k``,
``x = G_target/g_max``, ``k <= degree``: maximum likelihood (``scipy.optimize.minimize`` from
a least-squares fit to binned standard deviations). A profile needs ``sigma >= 0`` on all of
``[0, 1]``; where the fit, extrapolated beyond the measured targets, dips below 0 by less than
three standard errors, the profile's constant term is raised until it touches 0 (the fit
itself keeps its values); a deeper dip is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize

from ..measurements import ProgrammingMeasurements
from .base import Array, Estimate, _Fit, _r2

__all__ = ["ProgrammingFit", "fit_programming"]


@dataclass(frozen=True)
class ProgrammingFit(_Fit):
    """Conductance-dependent programming noise ``sigma(x) = sum_k c_k x^k`` (fraction of g_max)."""

    kind: ClassVar[str] = "programming"

    coefficients: tuple[Estimate, ...]
    n: int
    log_likelihood: float
    binned_r2: float  # model std vs binned empirical std
    mean_error: float  # mean of (G - target)/g_max; the model assumes 0
    covariance: Array = field(repr=False, compare=False)  # of the coefficients (inverse Fisher)
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def std(self, x: Array | float) -> Array:
        """Fitted std (fraction of g_max) at normalised target conductance ``x``."""
        return np.polynomial.polynomial.polyval(x, [c.value for c in self.coefficients])

    def std_error(self, x: Array | float) -> Array:
        """Standard error of :meth:`std` at ``x``: ``sqrt(v C v^T)``, ``v = (1, x, x^2, ...)``
        and ``C`` the coefficients' covariance."""
        v = np.vander(np.atleast_1d(np.asarray(x, float)), len(self.coefficients), increasing=True)
        error = np.sqrt(np.einsum("ni,ij,nj->n", v, self.covariance, v))
        return error if np.ndim(x) else error[0]

    def parameters(self) -> dict[str, Estimate]:
        return {f"prog_noise_poly[{k}]": c for k, c in enumerate(self.coefficients)}

    def goodness(self) -> dict[str, float]:
        return {
            "n": self.n,
            "log_likelihood": self.log_likelihood,
            "binned_r2": self.binned_r2,
            "mean_error_gmax": self.mean_error,
        }

    def profile_changes(self) -> dict[str, Any]:
        coefficients = [c.value for c in self.coefficients]
        x = _lowest(np.polynomial.Polynomial(coefficients))
        low = float(self.std(x))
        if low < 0:
            if low < -3 * float(self.std_error(x)):
                raise ValueError(
                    f"calibration: fitted programming-noise std is {low:.3g} ± "
                    f"{float(self.std_error(x)):.2g} at G/g_max = {x:.3g}, below 0 by more than "
                    "three standard errors; measure targets across [0, 1] or lower the degree"
                )
            coefficients[0] -= low
        return {"prog_noise_std": 0.0, "prog_noise_poly": tuple(coefficients)}

    def plot(self, axes: list[Any]) -> None:
        (ax,) = axes
        c = self.curves
        ax.plot(c["bin_x"], c["bin_std"], "o", label="data (binned std)")
        grid = np.linspace(c["bin_x"].min(), c["bin_x"].max(), 200)
        ax.plot(grid, self.std(grid), "-", label="fit σ(G)")
        ax.set_xlabel("target conductance G / g_max (1)")
        ax.set_ylabel("programming noise std (fraction of g_max)")
        ax.set_title("programming noise", fontsize=9)
        ax.legend(fontsize=8)


def _lowest(poly: np.polynomial.Polynomial) -> float:
    """Where ``poly`` is lowest on ``[0, 1]``: an end or a real critical point inside."""
    inside = [r.real for r in poly.deriv().roots() if abs(r.imag) < 1e-12 and 0 < r.real < 1]
    return float(min([0.0, 1.0, *inside], key=poly))


def fit_programming(
    data: ProgrammingMeasurements, g_max_siemens: float, degree: int = 2
) -> ProgrammingFit:
    """Maximum-likelihood polynomial programming-noise std (see module docstring)."""
    if degree not in (0, 1, 2):
        raise ValueError(f"degree={degree}: the programming-noise polynomial has degree 0, 1 or 2")
    x = data.target_siemens / g_max_siemens
    r = (data.conductance_siemens - data.target_siemens) / g_max_siemens
    n = x.size
    if n < 3 * (degree + 1):
        raise ValueError(
            f"programming measurements: {n} rows fit a degree-{degree} polynomial poorly; "
            f"give at least {3 * (degree + 1)}"
        )
    n_bins = int(np.clip(n // 200, degree + 1, 20))
    order = np.argsort(x)
    groups = [g for g in np.array_split(order, n_bins) if g.size > 1]
    bin_x = np.array([x[g].mean() for g in groups])
    bin_std = np.array([math.sqrt(float(np.mean(r[g] ** 2))) for g in groups])
    bin_n = np.array([g.size for g in groups], float)
    vander = np.vander(x, degree + 1, increasing=True)
    if np.ptp(bin_x) > 0 and len(groups) > degree:
        start = np.polynomial.polynomial.polyfit(bin_x, bin_std, degree, w=np.sqrt(bin_n))
    else:
        start = np.zeros(degree + 1)
        start[0] = math.sqrt(float(np.mean(r**2)))
    if np.any(vander @ start <= 0):
        start = np.zeros(degree + 1)
        start[0] = math.sqrt(float(np.mean(r**2)))
    # Floor sigma so the objective stays finite if a step leaves sigma > 0; the optimum is
    # interior (the floor is far below any residual's size), so it is the ML fit.
    floor = 1e-6 * max(float(np.max(np.abs(r))), 1e-12)

    def nll(c: Array) -> tuple[float, Array]:
        sigma = np.maximum(vander @ c, floor)
        z2 = (r / sigma) ** 2
        grad = vander.T @ ((1.0 - z2) / sigma * (vander @ c > floor))
        return float(np.sum(np.log(sigma) + 0.5 * z2)), grad

    best = minimize(nll, start, jac=True, method="BFGS", options={"gtol": 1e-9})
    coef = best.x
    sigma = vander @ coef
    info = (vander / sigma[:, None] ** 2).T @ vander * 2.0
    covariance = np.linalg.inv(info)
    se = np.sqrt(np.diag(covariance))
    model_bin = np.polynomial.polynomial.polyval(bin_x, coef)
    return ProgrammingFit(
        coefficients=tuple(Estimate(float(c), float(s)) for c, s in zip(coef, se, strict=True)),
        n=int(n),
        log_likelihood=float(-0.5 * np.sum(np.log(2 * np.pi * sigma**2) + (r / sigma) ** 2)),
        binned_r2=_r2(bin_std, bin_std - model_bin),
        mean_error=float(np.mean(r)),
        covariance=covariance,
        curves={"bin_x": bin_x, "bin_std": bin_std},
    )
