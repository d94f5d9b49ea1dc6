"""Mapping digital weights onto differential conductance pairs.

A weight row ``W_j`` (one output) is scaled by ``s_j`` and stored as a pair of normalised
conductances with ``G+ - G- = w_hat = W / s`` and ``G+, G- in [0, 1]`` (units of g_max):
``G+ = max(w_hat, 0)``, ``G- = max(-w_hat, 0)``. The scale is ``s_j = max_i |W_ji|`` per row
(adaptive, the usual choice for analog tiles) or a fixed ``profile.weight_range`` that
clips larger weights. ``s`` is a digital constant applied after the ADC, so it is
not differentiated (as in hardware, where it is set once at programming).

Weight grids (``weight_bits = b``, ``profile.weight_quant``):

* ``symmetric`` (a differential pair, each polarity its own device): codes
  ``k in [-(2^(b-1) - 1), 2^(b-1) - 1]``, ``w_hat = k / (2^(b-1) - 1)``, so the row's
  largest ``|W|`` lands on the end code and ``0`` is code 0 (``2^b - 1`` levels used).
* ``affine`` (one device per weight whose conductance spans the row's whole range, and an
  offset column subtracting a per-row reference ``z_j / L`` from every output): the row's
  range ``[w_min, w_max] = [min(min_i W_ji, 0), max(max_i W_ji, 0)]`` (``[-r, r]`` with a
  fixed range ``r``) is ``s_j = w_max - w_min``, cut into ``L = 2^b - 1`` steps
  ``Delta_j = s_j / L`` (all ``2^b`` levels), with the integer zero point
  ``z_j = round(-w_min / Delta_j)``; codes ``k in [-z_j, L - z_j]`` and ``w_hat = k / L``,
  so ``0`` is exactly representable (code 0, device at the offset ``z_j / L``) and a
  one-signed row gets twice the resolution of the symmetric grid. The surrogate and the
  chip hold ``w_hat = G - z_j / L`` with the profile's per-weight noise (a fraction of
  ``g_max`` per weight, as for a pair); a chip still splits ``w_hat`` into a pair for
  conductance-dependent noise, mismatch and drift, so the single device's conductance
  ``G`` and a drifting reference column are not modelled.

Rounding: to the nearest code, or, given ``dither`` ``u ~ U[0, 1)`` (a layer's training
forward on ``weight_rounding='stochastic'``), stochastically, ``k = floor(c w_hat + u)``
with ``c`` codes per unit of ``w_hat`` (:func:`weight_codes_per_unit`): unbiased,
``E[k / c] = w_hat``, with variance ``f (1 - f) / c^2``, ``f`` the fractional part of
``c w_hat`` (:func:`~.quantize.round_codes_`). Gradients are straight-through either way.
"""

from __future__ import annotations

import torch

from .profile import HardwareProfile
from .quantize import code_range, grid_codes, quantize, weight_step


def weight_scale(weight: torch.Tensor, profile: HardwareProfile) -> torch.Tensor:
    """Per-output-row scale ``s`` of shape (out, 1): max |W| of the row, or the fixed range
    (on the affine grid: the row's span ``max(W, 0) - min(W, 0)``, or twice the range)."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    affine = _is_affine(profile)
    if profile.weight_range is not None:
        full_scale = profile.weight_range * (2.0 if affine else 1.0)
        return torch.full((flat.shape[0], 1), full_scale, dtype=flat.dtype, device=flat.device)
    # max(amax, -amin): two reductions, no |W| temporary of the weight's size
    row_max, row_min = flat.amax(dim=1, keepdim=True), flat.amin(dim=1, keepdim=True)
    if affine:
        scale = row_max.clamp_min(0.0) - row_min.clamp_max(0.0)
    else:
        scale = torch.maximum(row_max, -row_min)
    return scale.clamp_min(torch.finfo(flat.dtype).tiny)


def weight_clip_limit(profile: HardwareProfile) -> float:
    """``|W / s|`` at the fixed ``weight_range``: 1, or 1/2 on the affine grid (``s = 2 r``)."""
    return 0.5 if _is_affine(profile) else 1.0


def weight_grid(
    w_hat: torch.Tensor, profile: HardwareProfile
) -> tuple[float, int | torch.Tensor, int | torch.Tensor]:
    """``(c, k_min, k_max)`` of the profile's weight grid (module docstring) for normalised
    weights ``w_hat`` (out, n): ``c`` codes per unit of ``w_hat`` and the code range, ints
    for the symmetric grid and (out, 1) tensors ``-z_j``, ``L - z_j`` for the affine one."""
    c = weight_codes_per_unit(profile)
    if not _is_affine(profile):
        k_min, k_max = code_range(profile.weight_bits)  # type: ignore[arg-type]
        return c, k_min, k_max
    if profile.weight_range is not None:
        row_min = torch.full_like(w_hat[:, :1], -0.5)
    else:
        row_min = w_hat.detach().amin(dim=1, keepdim=True).clamp_max(0.0)
    zero_point = torch.round(-row_min * c)
    return c, -zero_point, c - zero_point


def weight_codes_per_unit(profile: HardwareProfile) -> float:
    """Codes per unit of normalised weight ``w_hat``, the inverse grid step: ``2^(b-1) - 1``
    on the symmetric grid, ``L = 2^b - 1`` on the affine one."""
    bits = profile.weight_bits
    if bits is None:
        raise ValueError("the profile has weight_bits=None (analog weights): no weight grid")
    return float((1 << bits) - 1 if _is_affine(profile) else (1 << (bits - 1)) - 1)


def normalized_weights(
    weight: torch.Tensor,
    scale: torch.Tensor,
    profile: HardwareProfile,
    dither: torch.Tensor | None = None,
) -> torch.Tensor:
    """``w_hat = Q(W / s)`` of shape (out, in_flat) in [-1, 1], quantised if weight_bits set:
    to the nearest code, or stochastically given ``dither`` (``U[0, 1)`` of that shape)."""
    w_hat = weight.reshape(weight.shape[0], -1) / scale
    if profile.weight_range is not None:
        limit = weight_clip_limit(profile)
        w_hat = w_hat.clamp(-limit, limit)
    if profile.weight_bits is None:
        return w_hat
    if dither is None and not _is_affine(profile):
        return quantize(w_hat, profile.weight_bits, weight_step(profile.weight_bits))
    c, k_min, k_max = weight_grid(w_hat, profile)
    # A row's end weight can sit up to half a code beyond its end code (the zero point is
    # rounded): that is rounding, not clipping, so its gradient passes.
    return grid_codes(w_hat, c, k_min, k_max, dither, margin=0.5) * (1.0 / c)


def held_weights(weight: torch.Tensor, profile: HardwareProfile) -> torch.Tensor:
    """The weights a chip holds before any device noise, ``s * Q(W / s)`` (clipped to the
    fixed range when the profile has one), in the units and shape of ``weight``; ``W``
    itself (no rounding through ``s``) when the profile neither quantises nor clips."""
    if profile.weight_bits is None and profile.weight_range is None:
        return weight
    scale = weight_scale(weight, profile)
    return (normalized_weights(weight, scale, profile) * scale).reshape(weight.shape)


def split_differential(w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G+, G-)`` normalised conductances of a signed normalised weight matrix."""
    return w_hat.clamp_min(0.0), (-w_hat).clamp_min(0.0)


def _is_affine(profile: HardwareProfile) -> bool:
    """True when weights are quantised on the affine grid (analog weights have no grid)."""
    return profile.weight_bits is not None and profile.weight_quant == "affine"
