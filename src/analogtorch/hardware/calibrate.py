"""Calibration: fit a :class:`HardwareProfile`'s non-idealities to device measurements.

``calibrate(measurements, base)`` runs one fitter per measurement kind present (see
:mod:`.measurements` for the CSV schema) and returns a :class:`CalibrationResult` whose
``.profile`` is ``base.replace(...)`` with the fitted fields. Conductances are normalised by
``base.g_max_siemens`` (``y = G / g_max``), times use ``t0 = base.drift_t0_seconds`` and the
transfer curve ``v_read = base.v_read_volts``. The models are those the simulator applies
(:mod:`.noise`, :mod:`.chip`, :mod:`.circuit`, :mod:`.nodal`):

* **drift and time-varying noise** (``fit_drift``): device ``i`` read at time ``t_ij`` is ::

      y_ij = a_i (max(t_ij, t0)/t0)^(-nu_i) (1 + mu(t_ij)) + sigma_r(t_ij) eps_ij
      mu(t) = s ln(1 + t/t0),  sigma_r(t)^2 = sigma_r^2 (1 + gamma ln(1 + t/t0))

  with ``a_i`` the device's programmed conductance (a free per-device parameter; programming
  noise is therefore absorbed and not fitted here), ``nu_i ~ N(nu_mean, nu_std^2)`` and
  ``eps_ij`` independent standard normals (fresh read noise at every read), exactly as
  ``chip.read_state`` drifts, shifts and reads a programmed device. The three effects are
  separated by their signatures: drift is multiplicative and device-specific (its own
  ``nu_i``) and frozen before ``t0``; the mean shift is multiplicative and common to all
  devices, so it is identified by the common departure from each device's power law (chiefly
  the reads at ``t <= t0``, where drift is off, and the curvature of ``ln(1 + t/t0)`` against
  ``ln(t/t0)``); read noise is additive, zero-mean and independent between reads, so it is
  what remains. Fit: for each trial ``s`` every device's ``(a_i, nu_i)`` is a weighted
  Gauss-Newton least-squares fit (weights ``1/sigma_r(t)^2``), and ``s`` minimises the total
  weighted squared residual (``minimize_scalar``); leverage-corrected squared residuals
  ``r^2/(1-h)`` (unbiased for ``sigma_r(t)^2``) give ``sigma_r^2`` and ``gamma`` by
  iteratively reweighted least squares of ``sigma_r^2 (1 + gamma L)`` on ``L = ln(1 + t/t0)``
  (the Gaussian maximum likelihood); the weights are updated and the whole repeated. Last,
  ``nu_mean`` and ``nu_std`` maximise the likelihood of the per-device estimates
  ``nu_i_hat ~ N(nu_mean, nu_std^2 + se_i^2)``, so the estimation error ``se_i`` of each
  device's exponent does not inflate ``nu_std``. The simulator clips ``nu`` at 0; the fit
  ignores that clip (immaterial when ``nu_mean >> nu_std``).
* **programming noise** (``fit_programming``): ``G - G_target ~ N(0, (g_max sigma(x))^2)`` with
  ``sigma(x) = sum_k c_k x^k``, ``x = G_target/g_max``, ``k <= degree``: maximum likelihood
  (``scipy.optimize.minimize`` from a least-squares fit to binned standard deviations).
* **transfer curve** (``fit_transfer``): ``I = G v_read f(V/v_read)`` with
  ``f(v) = sinh(a v)/sinh(a)`` or ``tanh(a v)/tanh(a)`` (``circuit.apply_transfer_curve``):
  least squares in ``alpha`` on the normalised current ``I/(G v_read)``; the curve with the
  smaller residual wins unless one is asked for.
* **IR drop** (``fit_ir_drop``): least squares of the measured bit-line currents against
  ``nodal.solve_crossbar(G, V, r)`` in the wire-segment resistance ``r`` (bounded, log-space).

Every fit reports standard errors (from the Fisher information / Gauss-Newton curvature)
and goodness of fit; a fitted value outside a profile field's range is clipped to it when
the profile is built (the fit itself keeps the raw value).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar

from .circuit import transfer_curve
from .measurements import (
    CrossbarMeasurement,
    DriftMeasurements,
    Measurements,
    ProgrammingMeasurements,
    TransferMeasurements,
)
from .nodal import solve_crossbar
from .profile import HardwareProfile

__all__ = [
    "CalibrationResult",
    "DriftFit",
    "Estimate",
    "IRDropFit",
    "ProgrammingFit",
    "TransferFit",
    "calibrate",
    "fit_drift",
    "fit_ir_drop",
    "fit_programming",
    "fit_transfer",
    "transfer_function",
]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A fitted value and its standard error (NaN when not available)."""

    value: float
    stderr: float = math.nan

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "stderr": None if math.isnan(self.stderr) else self.stderr}

    def __str__(self) -> str:
        if math.isnan(self.stderr):
            return f"{self.value:.4g}"
        return f"{self.value:.4g} ± {self.stderr:.2g}"


class _Fit:
    """Shared interface of the per-kind fit results."""

    kind: ClassVar[str]
    n_panels: ClassVar[int] = 1

    def parameters(self) -> dict[str, Estimate]:
        """Fitted values keyed by profile field name (``name[k]`` for a tuple entry)."""
        raise NotImplementedError

    def goodness(self) -> dict[str, float]:
        """Goodness-of-fit numbers (n, R^2, RMS residual and/or log-likelihood)."""
        raise NotImplementedError

    def profile_changes(self) -> dict[str, Any]:
        """The ``HardwareProfile.replace`` arguments this fit implies."""
        raise NotImplementedError

    def plot(self, axes: list[Any]) -> None:
        """Draw fit vs data on ``n_panels`` matplotlib axes."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": {k: e.to_dict() for k, e in self.parameters().items()},
            "goodness": {k: _finite_or_none(v) for k, v in self.goodness().items()},
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _r2(y: Array, residual: Array) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum(residual**2)) / total if total > 0 else math.nan


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


# -- drift, mean shift and read noise ---------------------------------------------------------


@dataclass(frozen=True)
class DriftFit(_Fit):
    """Drift exponents, systematic mean shift and time-dependent read noise (see module)."""

    kind: ClassVar[str] = "drift"
    n_panels: ClassVar[int] = 2

    nu_mean: Estimate
    nu_std: Estimate
    mean_log_slope: Estimate
    read_noise_std: Estimate
    read_noise_log_growth: Estimate
    n_devices: int
    n_measurements: int
    t0_s: float
    r2: float
    rms_residual: float  # fraction of g_max
    log_likelihood: float
    chi2_per_dof: float  # mean of r^2 / ((1-h) sigma_r(t)^2); 1 for a right noise model
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def parameters(self) -> dict[str, Estimate]:
        return {
            "drift_nu_mean": self.nu_mean,
            "drift_nu_std": self.nu_std,
            "noise_mean_log_slope": self.mean_log_slope,
            "read_noise_std": self.read_noise_std,
            "read_noise_log_growth": self.read_noise_log_growth,
        }

    def goodness(self) -> dict[str, float]:
        return {
            "n": self.n_measurements,
            "n_devices": self.n_devices,
            "r2": self.r2,
            "rms_residual_gmax": self.rms_residual,
            "log_likelihood": self.log_likelihood,
            "chi2_per_dof": self.chi2_per_dof,
        }

    def profile_changes(self) -> dict[str, Any]:
        return {
            "drift_nu_mean": _clip(self.nu_mean.value, 0.0, 1.0),
            "drift_nu_std": _clip(self.nu_std.value, 0.0, 1.0),
            "noise_mean_log_slope": _clip(self.mean_log_slope.value, -1.0, 1.0),
            "read_noise_std": _clip(self.read_noise_std.value, 0.0, 1.0),
            "read_noise_log_growth": max(self.read_noise_log_growth.value, 0.0),
        }

    def plot(self, axes: list[Any]) -> None:
        c = self.curves
        ax_mean, ax_var = axes
        ax_mean.plot(c["bin_time_s"], c["bin_ratio"], "o", label="data (mean over devices)")
        ax_mean.plot(c["grid_time_s"], c["grid_ratio"], "-", label="fit")
        ax_mean.set_xscale("symlog", linthresh=self.t0_s / 10)
        ax_mean.set_xlabel("time since programming t (s)")
        ax_mean.set_ylabel("G(t) / G_programmed (1)")
        ax_mean.set_title(
            f"drift: ν = {self.nu_mean.value:.3g} ± {self.nu_std.value:.2g} (sd), "
            f"μ slope {self.mean_log_slope.value:.3g}",
            fontsize=9,
        )
        ax_mean.legend(fontsize=8)
        ax_var.plot(c["bin_time_s"], c["bin_variance"] * 1e6, "o", label="data r²/(1-h)")
        ax_var.plot(c["grid_time_s"], c["grid_variance"] * 1e6, "-", label="fit")
        ax_var.set_xscale("symlog", linthresh=self.t0_s / 10)
        ax_var.set_xlabel("time since programming t (s)")
        ax_var.set_ylabel("read-noise variance σ_r²(t) (1e-6 g_max²)")
        ax_var.set_title(
            f"read noise: σ_r = {self.read_noise_std.value:.3g} g_max, "
            f"γ = {self.read_noise_log_growth.value:.3g}",
            fontsize=9,
        )
        ax_var.legend(fontsize=8)


def _per_device_sums(dev: NDArray[np.int64], n_dev: int, *columns: Array) -> list[Array]:
    return [np.bincount(dev, weights=c, minlength=n_dev) for c in columns]


@dataclass
class _DeviceFit:
    """Per-device Gauss-Newton state of ``y ≈ a exp(-nu D) m`` (arrays per device / per read)."""

    a: Array
    nu: Array
    has_nu: NDArray[np.bool_]
    residual: Array
    leverage: Array
    var_nu: Array  # (J^T W J)^-1 entry for nu; a variance when w = 1/sigma^2
    sse: float
    info_s: float  # Fisher information of the mean-shift slope, devices profiled out


def _log_start(
    dev: NDArray[np.int64], n_dev: int, y: Array, d: Array, m: Array
) -> tuple[Array, Array]:
    """Weighted log-log least squares ``ln(y/m) = ln a - nu D`` (weights y^2), per device."""
    z = np.log(np.maximum(y, 1e-9 * max(float(y.max()), 1e-30)) / m)
    w = y**2 + 1e-30
    s0, s1, s2, b0, b1 = _per_device_sums(dev, n_dev, w, w * d, w * d * d, w * z, w * d * z)
    det = s0 * s2 - s1**2
    ok = det > 1e-9 * np.maximum(s0 * s2, 1e-300)
    slope = np.where(ok, (s0 * b1 - s1 * b0) / np.where(ok, det, 1.0), 0.0)
    intercept = (b0 - slope * s1) / s0
    return np.exp(intercept), -slope


def _fit_devices(
    dev: NDArray[np.int64],
    n_dev: int,
    y: Array,
    d: Array,
    log_growth: Array,
    slope: float,
    w: Array,
    iterations: int = 6,
) -> _DeviceFit:
    """Each device's ``(a_i, nu_i)`` for a given mean-shift slope, by Gauss-Newton."""
    m = 1.0 + slope * log_growth
    a, nu = _log_start(dev, n_dev, y, d, m)
    for step in range(iterations + 1):
        e = np.exp(-nu[dev] * d) * m
        pred = a[dev] * e
        r = y - pred
        j_a, j_nu = e, -d * pred
        s11, s12, s22, b1, b2 = _per_device_sums(
            dev, n_dev, w * j_a * j_a, w * j_a * j_nu, w * j_nu * j_nu, w * j_a * r, w * j_nu * r
        )
        det = s11 * s22 - s12**2
        has_nu = det > 1e-9 * np.maximum(s11 * s22, 1e-300)
        safe_det = np.where(has_nu, det, 1.0)
        if step == iterations:
            break
        da = np.where(has_nu, (s22 * b1 - s12 * b2) / safe_det, b1 / s11)
        dnu = np.where(has_nu, (s11 * b2 - s12 * b1) / safe_det, 0.0)
        a, nu = a + da, nu + np.clip(dnu, -0.5, 0.5)
    c11 = np.where(has_nu, s22 / safe_det, 1.0 / s11)
    c12 = np.where(has_nu, -s12 / safe_det, 0.0)
    c22 = np.where(has_nu, s11 / safe_det, np.inf)
    j_nu_used = np.where(has_nu[dev], j_nu, 0.0)
    leverage = w * (
        c11[dev] * j_a**2
        + 2 * c12[dev] * j_a * j_nu_used
        + np.where(has_nu[dev], c22[dev], 0.0) * j_nu_used**2
    )
    # Information of s with (a_i, nu_i) profiled out: sum w J_s^2 - sum_i b_i^T C_i b_i.
    j_s = pred / m * log_growth
    q_ss = float(np.sum(w * j_s**2))
    p1, p2 = _per_device_sums(dev, n_dev, w * j_s * j_a, w * j_s * j_nu_used)
    info_s = q_ss - float(
        np.sum(c11 * p1**2 + 2 * c12 * p1 * p2 + np.where(has_nu, c22, 0) * p2**2)
    )
    return _DeviceFit(
        a=a,
        nu=nu,
        has_nu=has_nu,
        residual=r,
        leverage=leverage,
        var_nu=c22,
        sse=float(np.sum(w * r**2)),
        info_s=info_s,
    )


def _variance_law(q: Array, log_growth: Array, iterations: int = 20) -> tuple[Array, Array]:
    """ML fit of ``E[q] = A + B L`` for squared residuals ``q`` (IRLS, weights 1/(A+BL)^2).

    Returns ``(A, B)`` and their covariance (``var q = 2 (A+BL)^2`` for Gaussian residuals).
    """
    x = np.stack([np.ones_like(log_growth), log_growth], axis=1)
    coef = np.array([q.mean(), 0.0])
    for _ in range(iterations):
        v = np.maximum(x @ coef, 1e-3 * coef[0])
        wx = x / v[:, None] ** 2
        new = np.linalg.solve(x.T @ wx, wx.T @ q)
        if np.allclose(new, coef, rtol=1e-12, atol=0):
            coef = new
            break
        coef = new
    v = np.maximum(x @ coef, 1e-3 * coef[0])
    cov = np.linalg.inv((x / (2 * v[:, None] ** 2)).T @ x)
    return coef, cov


def _population(nu: Array, var_nu: Array) -> tuple[Estimate, Estimate]:
    """ML ``(mean, std)`` of ``nu_i ~ N(mean, std^2 + var_i)`` with standard errors."""

    def nll(p: Array) -> float:
        v = p[1] ** 2 + var_nu
        return 0.5 * float(np.sum(np.log(v) + (nu - p[0]) ** 2 / v))

    start_std = math.sqrt(max(float(np.var(nu) - np.mean(var_nu)), 1e-8))
    best = minimize(
        nll,
        np.array([float(np.mean(nu)), start_std]),
        method="L-BFGS-B",
        bounds=[(None, None), (0.0, None)],
        options={"ftol": 1e-15, "gtol": 1e-12},
    )
    mean, std = float(best.x[0]), float(best.x[1])
    v = std**2 + var_nu
    se_mean = 1.0 / math.sqrt(float(np.sum(1.0 / v)))
    info_std = float(np.sum(2.0 * std**2 / v**2))
    se_std = 1.0 / math.sqrt(info_std) if info_std > 0 else math.nan
    return Estimate(mean, se_mean), Estimate(std, se_std)


def fit_drift(
    data: DriftMeasurements, g_max_siemens: float, t0_s: float, outer_iterations: int = 3
) -> DriftFit:
    """Fit drift ``nu``, mean shift ``mu(t)`` and read noise ``sigma_r(t)`` (module docstring).

    Devices with fewer than two reads are ignored; devices read only at ``t <= t0`` inform
    the mean shift and read noise but not the drift exponents.
    """
    _, dev_all, counts = np.unique(data.device, return_inverse=True, return_counts=True)
    keep = counts[dev_all] >= 2
    if not np.any(keep):
        raise ValueError("drift measurements: no device has two or more reads; nothing to fit")
    _, dev = np.unique(dev_all[keep], return_inverse=True)
    n_dev = int(dev.max()) + 1
    t = data.time_s[keep]
    y = data.conductance_siemens[keep] / g_max_siemens
    d = np.log(np.maximum(t, t0_s) / t0_s)
    log_growth = np.log1p(t / t0_s)
    lowest = max(-1.0, -0.99 / max(float(log_growth.max()), 1e-12))

    w = np.ones_like(y)
    coef = np.array([1.0, 0.0])
    slope = 0.0
    for _ in range(outer_iterations):
        best = minimize_scalar(
            lambda s, w=w: _fit_devices(dev, n_dev, y, d, log_growth, s, w).sse,
            bounds=(lowest, 1.0),
            method="bounded",
            options={"xatol": 1e-9},
        )
        slope = float(best.x)
        fit = _fit_devices(dev, n_dev, y, d, log_growth, slope, w)
        usable = fit.leverage < 1.0 - 1e-6
        if not np.any(usable) or np.ptp(log_growth[usable]) <= 0:
            raise ValueError(
                "drift measurements: too few reads to separate read noise from drift; give "
                "each device three or more reads at two or more distinct times"
            )
        q = fit.residual[usable] ** 2 / (1.0 - fit.leverage[usable])
        coef, cov = _variance_law(q, log_growth[usable])
        w = 1.0 / np.maximum(coef[0] + coef[1] * log_growth, 1e-3 * coef[0])

    fit = _fit_devices(dev, n_dev, y, d, log_growth, slope, w)
    var_r = 1.0 / w
    usable = fit.leverage < 1.0 - 1e-6
    q = fit.residual[usable] ** 2 / (1.0 - fit.leverage[usable])
    sigma2, growth = float(coef[0]), float(coef[1] / coef[0])
    grad_growth = np.array([-coef[1] / coef[0] ** 2, 1.0 / coef[0]])  # d(B/A)/d(A, B)

    informative = fit.has_nu & np.isfinite(fit.var_nu) & np.isfinite(fit.nu)
    if not np.any(informative):
        raise ValueError(
            "drift measurements: no device is read at two times of which one is after "
            f"t0 = {t0_s:g} s (drift is off before t0), so no drift exponent can be fitted"
        )
    nu_mean, nu_std = _population(fit.nu[informative], fit.var_nu[informative])
    # Every nu_i_hat moves with the common slope s (both bend the curve), so the error of s
    # adds to that of nu_mean: var += (d mean(nu_i)/ds)^2 var(s).
    se_slope = 1.0 / math.sqrt(fit.info_s) if fit.info_s > 0 else math.nan
    h = 1e-4
    shifted = [_fit_devices(dev, n_dev, y, d, log_growth, slope + e, w).nu for e in (h, -h)]
    dnu_ds = float(np.mean((shifted[0] - shifted[1])[informative])) / (2 * h)
    nu_mean = Estimate(nu_mean.value, math.hypot(nu_mean.stderr, dnu_ds * se_slope))

    bins = _time_bins(t)
    ratio = y / fit.a[dev]
    weight = fit.a[dev] ** 2
    grid = np.unique(np.concatenate([np.geomspace(max(t.min(), t0_s / 10), t.max(), 200), [0.0]]))
    grid = grid[grid >= t.min()]
    d_grid, l_grid = np.log(np.maximum(grid, t0_s) / t0_s), np.log1p(grid / t0_s)
    curves = {
        "bin_time_s": np.array([t[b].mean() for b in bins]),
        "bin_ratio": np.array([np.average(ratio[b], weights=weight[b]) for b in bins]),
        "bin_variance": np.array(
            [np.mean(fit.residual[b] ** 2 / np.maximum(1 - fit.leverage[b], 1e-6)) for b in bins]
        ),
        "grid_time_s": grid,
        "grid_ratio": np.exp(-nu_mean.value * d_grid + 0.5 * (nu_std.value * d_grid) ** 2)
        * (1 + slope * l_grid),
        "grid_variance": sigma2 * (1 + growth * l_grid),
        "nu_per_device": fit.nu[informative],
    }
    return DriftFit(
        nu_mean=nu_mean,
        nu_std=nu_std,
        mean_log_slope=Estimate(slope, se_slope),
        read_noise_std=Estimate(math.sqrt(sigma2), math.sqrt(cov[0, 0]) / (2 * math.sqrt(sigma2))),
        read_noise_log_growth=Estimate(growth, math.sqrt(float(grad_growth @ cov @ grad_growth))),
        n_devices=n_dev,
        n_measurements=int(y.size),
        t0_s=t0_s,
        r2=_r2(y, fit.residual),
        rms_residual=float(np.sqrt(np.mean(fit.residual**2))),
        log_likelihood=float(-0.5 * np.sum(np.log(2 * np.pi * var_r) + fit.residual**2 / var_r)),
        chi2_per_dof=float(np.mean(q / var_r[usable])),
        curves=curves,
    )


def _time_bins(t: Array, max_bins: int = 30) -> list[NDArray[np.bool_]]:
    """Masks grouping reads by time: each distinct time, or log-spaced bins when many."""
    distinct = np.unique(t)
    if distinct.size <= max_bins:
        return [t == v for v in distinct]
    positive = distinct[distinct > 0]
    edges = np.geomspace(positive.min(), positive.max(), max_bins)
    which = np.digitize(t, edges[1:-1])
    masks = [(which == k) & (t > 0) for k in range(edges.size - 1)]
    if np.any(t == 0):
        masks.insert(0, t == 0)
    return [m for m in masks if np.any(m)]


# -- programming noise ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgrammingFit(_Fit):
    """Conductance-dependent programming noise ``sigma(x) = sum_k c_k x^k`` (fraction of g_max)."""

    kind: ClassVar[str] = "programming"

    coefficients: tuple[Estimate, ...]
    n: int
    log_likelihood: float
    binned_r2: float  # model std vs binned empirical std
    mean_error: float  # mean of (G - target)/g_max; the model assumes 0
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def std(self, x: Array | float) -> Array:
        """Fitted std (fraction of g_max) at normalised target conductance ``x``."""
        return np.polynomial.polynomial.polyval(x, [c.value for c in self.coefficients])

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
        return {
            "prog_noise_std": 0.0,
            "prog_noise_poly": tuple(c.value for c in self.coefficients),
        }

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
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    model_bin = np.polynomial.polynomial.polyval(bin_x, coef)
    return ProgrammingFit(
        coefficients=tuple(Estimate(float(c), float(s)) for c, s in zip(coef, se, strict=True)),
        n=int(n),
        log_likelihood=float(-0.5 * np.sum(np.log(2 * np.pi * sigma**2) + (r / sigma) ** 2)),
        binned_r2=_r2(bin_std, bin_std - model_bin),
        mean_error=float(np.mean(r)),
        curves={"bin_x": bin_x, "bin_std": bin_std},
    )


# -- transfer curve ---------------------------------------------------------------------------


def transfer_function(v: Array, curve: str, alpha: float) -> Array:
    """Normalised device I-V ``f(v)`` of the hardware model (``circuit.transfer_curve``)."""
    return transfer_curve(torch.as_tensor(v, dtype=torch.float64), curve, alpha).numpy()


@dataclass(frozen=True)
class TransferFit(_Fit):
    """Transfer-curve shape and nonlinearity ``alpha`` (``I = G v_read f(V / v_read)``)."""

    kind: ClassVar[str] = "transfer"

    curve: str
    alpha: Estimate
    n: int
    r2: float
    rms_residual: float  # normalised current I/(G v_read)
    rms_by_curve: dict[str, float]
    v_read_volts: float
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def parameters(self) -> dict[str, Estimate]:
        return {"transfer_nonlinearity": self.alpha}

    def goodness(self) -> dict[str, float]:
        return {
            "n": self.n,
            "r2": self.r2,
            "rms_residual": self.rms_residual,
            **{f"rms_{curve}": rms for curve, rms in self.rms_by_curve.items()},
        }

    def profile_changes(self) -> dict[str, Any]:
        if self.curve == "linear":
            return {"transfer_curve": "linear", "transfer_nonlinearity": 0.0}
        return {"transfer_curve": self.curve, "transfer_nonlinearity": self.alpha.value}

    def to_dict(self) -> dict[str, Any]:
        return {"transfer_curve": self.curve, **super().to_dict()}

    def plot(self, axes: list[Any]) -> None:
        (ax,) = axes
        c = self.curves
        ax.plot(c["voltage_v"], c["normalised_current"], ".", ms=3, label="data")
        grid = np.linspace(c["voltage_v"].min(), c["voltage_v"].max(), 200)
        ax.plot(
            grid,
            transfer_function(grid / self.v_read_volts, self.curve, self.alpha.value),
            "-",
            label=f"fit {self.curve}, α = {self.alpha.value:.3g}",
        )
        ax.set_xlabel("voltage V (V)")
        ax.set_ylabel("current I / (G v_read) (1)")
        ax.set_title("transfer curve", fontsize=9)
        ax.legend(fontsize=8)


def fit_transfer(
    data: TransferMeasurements, v_read_volts: float, curve: str | None = None
) -> TransferFit:
    """Least-squares ``alpha`` of a sinh or tanh curve (the better one when ``curve=None``).

    A best ``alpha`` below 1e-3 (indistinguishable from a straight line) gives ``linear``.
    """
    if curve not in (None, "sinh", "tanh"):
        raise ValueError(f"curve={curve!r}: expected 'sinh', 'tanh' or None (pick the better)")
    use = data.conductance_siemens > 0
    if np.count_nonzero(use) < 2:
        raise ValueError("transfer measurements: need two or more rows with conductance > 0")
    v = data.voltage_v[use] / v_read_volts
    y = data.current_a[use] / (data.conductance_siemens[use] * v_read_volts)

    fits: dict[str, tuple[float, float]] = {}
    for name in (curve,) if curve else ("sinh", "tanh"):
        best = minimize_scalar(
            lambda u, name=name: float(np.sum((y - transfer_function(v, name, math.exp(u))) ** 2)),
            bounds=(math.log(1e-3), math.log(10.0)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        fits[name] = (math.exp(float(best.x)), float(best.fun))
    chosen = min(fits, key=lambda k: fits[k][1])
    alpha, sse = fits[chosen]
    step = 1e-5 * alpha
    jac = (
        transfer_function(v, chosen, alpha + step) - transfer_function(v, chosen, alpha - step)
    ) / (2 * step)
    dof = max(v.size - 1, 1)
    se = math.sqrt(sse / dof / float(np.sum(jac**2))) if np.any(jac) else math.nan
    if alpha < 1.001e-3:
        chosen, alpha, se = "linear", 0.0, math.nan
        sse = float(np.sum((y - v) ** 2))
    residual = y - transfer_function(v, chosen, alpha)
    return TransferFit(
        curve=chosen,
        alpha=Estimate(alpha, se),
        n=int(v.size),
        r2=_r2(y, residual),
        rms_residual=math.sqrt(sse / v.size),
        rms_by_curve={k: math.sqrt(s / v.size) for k, (_, s) in fits.items()},
        v_read_volts=v_read_volts,
        curves={"voltage_v": data.voltage_v[use], "normalised_current": y},
    )


# -- IR drop ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IRDropFit(_Fit):
    """Wire-segment resistance from crossbar currents against the exact nodal solve."""

    kind: ClassVar[str] = "ir_drop"

    wire_resistance_ohm: Estimate
    n: int
    r2: float
    rms_residual_a: float
    rms_ideal_a: float  # the same with r = 0: what IR drop explains
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def parameters(self) -> dict[str, Estimate]:
        return {"wire_resistance_ohm": self.wire_resistance_ohm}

    def goodness(self) -> dict[str, float]:
        return {
            "n": self.n,
            "r2": self.r2,
            "rms_residual_a": self.rms_residual_a,
            "rms_residual_ideal_a": self.rms_ideal_a,
        }

    def profile_changes(self) -> dict[str, Any]:
        return {"wire_resistance_ohm": _clip(self.wire_resistance_ohm.value, 0.0, 1e4)}

    def plot(self, axes: list[Any]) -> None:
        (ax,) = axes
        c = self.curves
        measured_ua = c["measured_a"] * 1e6
        ax.plot(
            measured_ua, (c["ideal_a"] - c["measured_a"]) * 1e9, ".", ms=3, label="ideal, r = 0"
        )
        ax.plot(
            measured_ua,
            (c["model_a"] - c["measured_a"]) * 1e9,
            ".",
            ms=3,
            label=f"fit, r = {self.wire_resistance_ohm.value:.3g} Ω",
        )
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("measured bit-line current (µA)")
        ax.set_ylabel("model − measured current (nA)")
        ax.set_title("IR drop (exact nodal solve)", fontsize=9)
        ax.legend(fontsize=8)


def fit_ir_drop(
    crossbars: tuple[CrossbarMeasurement, ...] | list[CrossbarMeasurement],
    bounds_ohm: tuple[float, float] = (1e-4, 1e4),
) -> IRDropFit:
    """Least-squares wire resistance, ``nodal.solve_crossbar`` as the forward model."""
    if not crossbars:
        raise ValueError("IR-drop fit needs at least one crossbar measurement")
    measured = np.concatenate([xb.current_a.ravel() for xb in crossbars])

    def model(r: float) -> Array:
        return np.concatenate(
            [solve_crossbar(xb.conductance_siemens, xb.voltage_v, r).ravel() for xb in crossbars]
        )

    best = minimize_scalar(
        lambda u: float(np.sum((measured - model(math.exp(u))) ** 2)),
        bounds=(math.log(bounds_ohm[0]), math.log(bounds_ohm[1])),
        method="bounded",
        options={"xatol": 1e-7},
    )
    r = math.exp(float(best.x))
    ideal = model(0.0)
    fitted = model(r)
    sse = float(np.sum((measured - fitted) ** 2))
    if sse >= float(np.sum((measured - ideal) ** 2)):
        r, fitted, sse = 0.0, ideal, float(np.sum((measured - ideal) ** 2))
    step = 1e-4 * max(r, bounds_ohm[0])
    jac = (model(r + step) - model(max(r - step, 0.0))) / (r + step - max(r - step, 0.0))
    dof = max(measured.size - 1, 1)
    se = math.sqrt(sse / dof / float(np.sum(jac**2))) if np.any(jac) else math.nan
    return IRDropFit(
        wire_resistance_ohm=Estimate(r, se),
        n=int(measured.size),
        r2=_r2(measured, measured - fitted),
        rms_residual_a=math.sqrt(sse / measured.size),
        rms_ideal_a=float(np.sqrt(np.mean((measured - ideal) ** 2))),
        curves={"measured_a": measured, "model_a": fitted, "ideal_a": ideal},
    )


# -- everything together ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationResult:
    """The calibrated profile, the base it started from and each kind's fit."""

    profile: HardwareProfile
    base: HardwareProfile
    fits: dict[str, _Fit]
    source: str = "<arrays>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "base_profile": self.base.name,
            "fits": {kind: fit.to_dict() for kind, fit in self.fits.items()},
            "profile": self.profile.model_dump(mode="json"),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON record (fitted parameters, standard errors, goodness of fit, profile)."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    def rows(self) -> list[tuple[str, str, Estimate | str, Any]]:
        """(kind, parameter, fitted estimate, base value) for every fitted parameter."""
        out: list[tuple[str, str, Estimate | str, Any]] = []
        for kind, fit in self.fits.items():
            if isinstance(fit, TransferFit):
                out.append((kind, "transfer_curve", fit.curve, self.base.transfer_curve))
            for name, estimate in fit.parameters().items():
                base_name, _, index = name.partition("[")
                base_value = getattr(self.base, base_name)
                if index:
                    k = int(index.rstrip("]"))
                    base_value = base_value[k] if k < len(base_value) else None
                out.append((kind, name, estimate, base_value))
        return out

    def plot(self, path: str | Path) -> Path:
        """Fit vs data, one panel per kind (two for drift: mean and read-noise variance)."""
        from ..figures import pyplot, save_figure

        plt = pyplot()
        n_panels = sum(fit.n_panels for fit in self.fits.values())
        n_cols = min(n_panels, 3)
        n_rows = math.ceil(n_panels / n_cols)
        fig, axes = plt.subplots(
            n_rows, n_cols, figsize=(4.6 * n_cols, 3.9 * n_rows), squeeze=False
        )
        flat = list(axes.flat)
        for ax in flat[n_panels:]:
            ax.set_visible(False)
        for fit in self.fits.values():
            fit.plot(flat[: fit.n_panels])
            flat = flat[fit.n_panels :]
        fig.suptitle(f"calibration of {self.base.name!r} from {Path(self.source).name}")
        fig.tight_layout()
        return save_figure(fig, path)


def calibrate(
    measurements: Measurements,
    base: HardwareProfile,
    *,
    transfer_curve: str | None = None,
    prog_noise_degree: int = 2,
) -> CalibrationResult:
    """Fit every measurement kind present and return the calibrated profile with the fits.

    Args:
        measurements: from :func:`load_measurements` (or built from arrays).
        base: the profile to start from; supplies ``g_max_siemens``, ``drift_t0_seconds``
            and ``v_read_volts``, and every field no measurement informs.
        transfer_curve: ``"sinh"`` or ``"tanh"`` to force the curve; ``None`` picks the one
            with the smaller residual.
        prog_noise_degree: degree (0-2) of the programming-noise polynomial.
    """
    if not isinstance(base, HardwareProfile):
        raise TypeError(f"base must be a HardwareProfile, got {type(base).__name__}")
    if not measurements.kinds:
        raise ValueError(f"{measurements.source}: no measurements to calibrate from")
    fits: dict[str, _Fit] = {}
    if measurements.drift is not None:
        fits["drift"] = fit_drift(measurements.drift, base.g_max_siemens, base.drift_t0_seconds)
    if measurements.programming is not None:
        fits["programming"] = fit_programming(
            measurements.programming, base.g_max_siemens, prog_noise_degree
        )
    if measurements.transfer is not None:
        fits["transfer"] = fit_transfer(measurements.transfer, base.v_read_volts, transfer_curve)
    if measurements.ir_drop:
        fits["ir_drop"] = fit_ir_drop(measurements.ir_drop)
    changes: dict[str, Any] = {}
    for fit in fits.values():
        changes.update(fit.profile_changes())
    source_name = Path(measurements.source).name
    profile = base.replace(
        name=f"{base.name}-calibrated",
        description=f"{base.name} calibrated from {source_name} ({', '.join(fits)})",
        **changes,
    )
    return CalibrationResult(profile=profile, base=base, fits=fits, source=measurements.source)
