"""Drift, systematic mean shift and time-varying read noise (``fit_drift``).

Conductances are normalised by ``g_max`` (``y = G / g_max``) and times use ``t0`` (the base
profile's ``drift_t0_seconds``). Device ``i`` read at time ``t_ij`` is ::

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar

from ..measurements import DriftMeasurements
from .base import Array, Estimate, _Fit, _r2, bounded

__all__ = ["DriftFit", "fit_drift"]


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
            "drift_nu_mean": bounded("drift_nu_mean", self.nu_mean, 0.0, 1.0),
            "drift_nu_std": bounded("drift_nu_std", self.nu_std, 0.0, 1.0),
            "noise_mean_log_slope": bounded("noise_mean_log_slope", self.mean_log_slope, -1.0, 1.0),
            "read_noise_std": bounded("read_noise_std", self.read_noise_std, 0.0, 1.0, " g_max"),
            "read_noise_log_growth": bounded(
                "read_noise_log_growth", self.read_noise_log_growth, 0.0, 100.0
            ),
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
