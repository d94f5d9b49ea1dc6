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


def _horner(coeffs: tuple[float, ...], g: torch.Tensor) -> torch.Tensor:
    """``sum_k c_k g^k`` by Horner's rule (one multiply-add pass per coefficient)."""
    value = torch.full_like(g, coeffs[-1])
    for coeff in reversed(coeffs[:-1]):
        value = value.mul_(g).add_(coeff)
    return value


def device_prog_noise_std(profile: HardwareProfile, g: torch.Tensor) -> torch.Tensor:
    """Conductance-dependent programming noise of one device, ``poly(g)`` (fraction of g_max)."""
    if not profile.prog_noise_poly:
        return torch.zeros_like(g)
    return _horner(profile.prog_noise_poly, g).clamp_min_(0.0)


def prog_noise_variance(profile: HardwareProfile, w_hat: torch.Tensor) -> torch.Tensor:
    """Programming-noise variance of each normalised weight, ``sigma_p(G)^2`` (see module)."""
    var = torch.full_like(w_hat, profile.prog_noise_std**2)
    if profile.prog_noise_poly:
        var = var + device_prog_noise_std(profile, w_hat.clamp_min(0)) ** 2
        var = var + device_prog_noise_std(profile, (-w_hat).clamp_min(0)) ** 2
    return var


def weight_noise_draw(
    w: torch.Tensor, z: torch.Tensor, profile: HardwareProfile, slope: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``w + sigma(w) z`` with ``sigma(w)^2 = sigma_p^2 + poly(|w|)^2 + poly(0)^2 + m^2 w^2``,
    and with ``slope=True`` also its derivative ``1 + z dsigma/dw`` (no autograd; None
    for a constant sigma, where it is 1).

    Exactly :func:`prog_noise_variance` plus mismatch: one device of a pair holds ``|w|``,
    the other 0 (``poly`` clipped at 0 as there);
    ``dsigma/dw = (poly(|w|) poly'(|w|) sign(w) [poly > 0] + m^2 w) / sigma``.
    """
    coeffs, m2 = profile.prog_noise_poly, profile.mismatch_std**2
    if not coeffs and m2 == 0:  # constant sigma: dsigma/dw = 0
        return torch.add(w, z, alpha=profile.prog_noise_std), None
    p0 = max(coeffs[0], 0.0) if coeffs else 0.0
    var = torch.full_like(w, profile.prog_noise_std**2 + p0**2)  # sigma_p^2, device at 0
    numerator = w * m2 if slope else None  # (d sigma^2 / dw) / 2
    if coeffs:
        a = w.abs()
        poly = _horner(coeffs, a).clamp_min_(0.0)
        if slope and len(coeffs) > 1:
            d_poly = _horner(tuple(k * c for k, c in enumerate(coeffs))[1:], a)
            numerator.addcmul_(d_poly.mul_(poly), w.sign())  # type: ignore[union-attr]
        var.addcmul_(poly, poly)
    if m2 > 0:
        var.addcmul_(w, w, value=m2)
    std = var.clamp_min_(1e-30).sqrt_()
    drawn = torch.addcmul(w, std, z)
    if numerator is None:
        return drawn, None
    return drawn, numerator.div_(std).mul_(z).add_(1.0)


class _WeightSpaceNoise(torch.autograd.Function):
    """:func:`weight_noise_draw` with ``dL/dw = g (1 + z dsigma/dw)``; keeps that factor."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        w: torch.Tensor,
        z: torch.Tensor,
        profile: HardwareProfile,
    ) -> torch.Tensor:
        drawn, factor = weight_noise_draw(w, z, profile, slope=True)
        ctx.save_for_backward(factor)
        return drawn

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        (factor,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return (grad if factor is None else grad * factor), None, None


def weight_space_noise(
    w_hat: torch.Tensor, z: torch.Tensor, profile: HardwareProfile
) -> torch.Tensor:
    """One training draw of the programming noise and mismatch of normalised weights.

    ``w_hat + sigma(w_hat) z`` with ``z ~ N(0, 1)`` of the weights' shape and
    ``sigma^2 = sigma_p(w_hat)^2 + mismatch_std^2 w_hat^2`` (per-weight variance in
    fractions of g_max, as a chip draws it), differentiable in ``w_hat``.
    """
    if not profile.prog_noise_poly and profile.mismatch_std == 0:
        return w_hat + profile.prog_noise_std * z  # constant sigma: the gradient is 1
    return _WeightSpaceNoise.apply(w_hat, z, profile)


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
