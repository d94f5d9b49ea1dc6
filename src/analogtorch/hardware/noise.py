"""Noise and drift laws of the hardware model as functions of time since programming.

All standard deviations are fractions of ``g_max`` for one weight (the differential pair
together); times are seconds since programming. Laws (``t0 = profile.drift_t0_seconds``):

* programming noise   ``sigma_p(G)^2 = prog_noise_std^2 + poly(G+)^2 + poly(G-)^2`` with
  ``poly(g) = max(sum_k c_k g^k, 0)`` per device (``G+``, ``G-`` normalised conductances);
* read noise          ``sigma_r(t)^2 = read_noise_std^2 (1 + gamma ln(1 + t / t0))``;
* systematic shift    ``mu(t) = noise_mean_log_slope * ln(1 + t / t0)`` (relative, on G);
* drift               ``G(t) = G(t0) (max(t, t0) / t0)^(-nu)``, ``nu ~ N(nu_mean, nu_std)``,
  clipped at 0 (a device never grows by drifting).
"""

from __future__ import annotations

import math

import torch

from .profile import HardwareProfile


def _check_time(time_s: float) -> None:
    if not time_s >= 0 or math.isinf(time_s):
        raise ValueError(f"time_s={time_s}: time since programming must be finite and >= 0 s")


def read_noise_std_at(profile: HardwareProfile, time_s: float) -> float:
    """Read-noise standard deviation ``sigma_r(t)`` (fraction of g_max)."""
    _check_time(time_s)
    growth = 1.0 + profile.read_noise_log_growth * math.log1p(time_s / profile.drift_t0_seconds)
    return profile.read_noise_std * math.sqrt(growth)


def noise_mean_at(profile: HardwareProfile, time_s: float) -> float:
    """Relative systematic conductance shift ``mu(t)``."""
    _check_time(time_s)
    return profile.noise_mean_log_slope * math.log1p(time_s / profile.drift_t0_seconds)


def device_prog_noise_std(profile: HardwareProfile, g: torch.Tensor) -> torch.Tensor:
    """Conductance-dependent programming noise of one device, ``poly(g)`` (fraction of g_max)."""
    std = torch.zeros_like(g)
    for power, coeff in enumerate(profile.prog_noise_poly):
        std = std + coeff * g**power
    return std.clamp_min(0.0)


def prog_noise_variance(profile: HardwareProfile, w_hat: torch.Tensor) -> torch.Tensor:
    """Programming-noise variance of each normalised weight, ``sigma_p(G)^2`` (see module)."""
    var = torch.full_like(w_hat, profile.prog_noise_std**2)
    if profile.prog_noise_poly:
        var = var + device_prog_noise_std(profile, w_hat.clamp_min(0)) ** 2
        var = var + device_prog_noise_std(profile, (-w_hat).clamp_min(0)) ** 2
    return var


def drift_factor(nu: torch.Tensor, time_s: float, t0_s: float) -> torch.Tensor:
    """Multiplicative drift ``(max(t, t0) / t0)^(-nu)`` of each device."""
    _check_time(time_s)
    return torch.exp(-nu * math.log(max(time_s, t0_s) / t0_s))


def sample_drift_exponents(
    profile: HardwareProfile, shape: torch.Size, generator: torch.Generator
) -> torch.Tensor:
    """Per-device drift exponents ``nu ~ N(nu_mean, nu_std)``, clipped at 0."""
    nu = torch.randn(shape, generator=generator) * profile.drift_nu_std + profile.drift_nu_mean
    return nu.clamp_min(0.0)
