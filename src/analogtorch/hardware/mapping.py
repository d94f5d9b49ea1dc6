"""Mapping digital weights onto differential conductance pairs.

A weight row ``W_j`` (one output) is scaled by ``s_j`` and stored as a pair of normalised
conductances with ``G+ - G- = w_hat = W / s`` and ``G+, G- in [0, 1]`` (units of g_max):
``G+ = max(w_hat, 0)``, ``G- = max(-w_hat, 0)``. The scale is ``s_j = max_i |W_ji|`` per row
(adaptive, the usual choice for analog tiles) or a fixed ``profile.weight_range`` that
clips larger weights. ``s`` is a digital constant applied after the ADC, so it is
not differentiated (as in hardware, where it is set once at programming).
"""

from __future__ import annotations

import torch

from .profile import HardwareProfile
from .quantize import quantize, weight_step


def weight_scale(weight: torch.Tensor, profile: HardwareProfile) -> torch.Tensor:
    """Per-output-row scale ``s`` of shape (out, 1): max |W| of the row, or the fixed range."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if profile.weight_range is not None:
        return torch.full(
            (flat.shape[0], 1), profile.weight_range, dtype=flat.dtype, device=flat.device
        )
    # max(amax, -amin): two reductions, no |W| temporary of the weight's size
    row_max = torch.maximum(flat.amax(dim=1, keepdim=True), -flat.amin(dim=1, keepdim=True))
    return row_max.clamp_min(torch.finfo(flat.dtype).tiny)


def normalized_weights(
    weight: torch.Tensor, scale: torch.Tensor, profile: HardwareProfile
) -> torch.Tensor:
    """``w_hat = Q(W / s)`` of shape (out, in_flat) in [-1, 1], quantised if weight_bits set."""
    w_hat = weight.reshape(weight.shape[0], -1) / scale
    if profile.weight_range is not None:
        w_hat = w_hat.clamp(-1.0, 1.0)
    if profile.weight_bits is not None:
        w_hat = quantize(w_hat, profile.weight_bits, weight_step(profile.weight_bits))
    return w_hat


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
