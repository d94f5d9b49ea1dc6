"""The per-tile ADC read-out of crossbar partial sums, fused with the read-out noise.

For partial sums ``P`` (one per tile, output and sample) the ADC returns the integer codes
summed over the tile axis (the digital accumulation)::

    u = c (g P + std * eps)          codes per unit c, column gain g, noise std * N(0, 1)
    y = sum_t clamp(round(u_t), k_min, k_max)

``g`` is a digital per-column gain (``1/s`` when raw weights went through the product, see
``surrogate.py``), ``std`` the noise standard deviation in the normalised units of ``g P``.
Gradients are straight-through for the rounding and zero where the clamp saturates, with
the LSQ gradient for a learned ``c`` (``quantize.py``): with ``g_u = dL/dy`` inside
``[k_min - 1e-3, k_max + 1e-3]`` and 0 outside,
``dL/dP = g_u c g``, ``dL/dstd = sum g_u c eps``, ``dL/dc = sum g_u u / c``.

One autograd node instead of five: the forward overwrites the product's temporary ``P``
with ``u`` (the product's own backward never reads its output) and keeps only ``u`` (and
``eps`` when ``std`` is learned through) for the backward.
"""

from __future__ import annotations

import torch

from .quantize import STE_MARGIN, code_range, lsq_step_grad

Scale = torch.Tensor | float


def _codes_input(
    partial: torch.Tensor,
    gain: torch.Tensor | None,
    std: Scale | None,
    eps: torch.Tensor | None,
    c: Scale,
) -> torch.Tensor:
    """``u = c (g P + std eps)``, written over ``partial``."""
    u = partial.mul_(c if gain is None else gain * c)
    if eps is None:
        return u
    if isinstance(std, torch.Tensor):
        return u.addcmul_(std * c, eps)
    return u.add_(eps, alpha=std * c)  # type: ignore[operator]


class _AdcTileSum(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        partial: torch.Tensor,
        gain: torch.Tensor | None,
        std: Scale | None,
        eps: torch.Tensor | None,
        c: Scale,
        bits: int,
        tile_dim: int,
    ) -> torch.Tensor:
        k_min, k_max = code_range(bits)
        u = _codes_input(partial, gain, std, eps, c)
        y = u.clamp(k_min, k_max).round_().sum(tile_dim)
        learned_std = isinstance(std, torch.Tensor) and std.requires_grad
        ctx.save_for_backward(
            u,
            gain,
            std if learned_std else None,
            eps if learned_std else None,
            c if isinstance(c, torch.Tensor) else None,
        )
        ctx.scalar_c = None if isinstance(c, torch.Tensor) else c  # type: ignore[attr-defined]
        ctx.bounds = (k_min - STE_MARGIN, k_max + STE_MARGIN)  # type: ignore[attr-defined]
        ctx.tile_dim = tile_dim  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        u, gain, std, eps, c_tensor = ctx.saved_tensors  # type: ignore[attr-defined]
        c = c_tensor if c_tensor is not None else ctx.scalar_c  # type: ignore[attr-defined]
        grad_u = grad.unsqueeze(ctx.tile_dim).expand_as(u)  # type: ignore[attr-defined]
        g_u = torch.ops.aten.hardtanh_backward(grad_u, u, *ctx.bounds)  # type: ignore[attr-defined]
        g_c = g_std = None
        if c_tensor is not None and ctx.needs_input_grad[4]:  # type: ignore[attr-defined]
            g_c = lsq_step_grad(g_u, u, c_tensor)
        if std is not None and ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            g_std = (g_u * eps).sum_to_size(std.shape) * c
        g_partial = g_u.mul_(c if gain is None else gain * c)
        return g_partial, None, g_std, None, g_c, None, None


def adc_tile_sum(
    partial: torch.Tensor,
    c: Scale,
    bits: int,
    tile_dim: int,
    *,
    gain: torch.Tensor | None = None,
    std: Scale | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """ADC codes of noisy partial sums summed over ``tile_dim`` (module docstring).

    ``partial`` must be a temporary of the caller: it is overwritten. ``std`` and ``eps``
    (standard normal, the shape of ``partial``) go together; ``std`` broadcasts to it.
    """
    if (std is None) != (eps is None):
        raise ValueError("adc_tile_sum: give both std and eps, or neither")
    tracking = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (partial, std, c)
    )
    if tracking:
        return _AdcTileSum.apply(partial, gain, std, eps, c, bits, tile_dim)
    k_min, k_max = code_range(bits)
    return _codes_input(partial, gain, std, eps, c).clamp_(k_min, k_max).round_().sum(tile_dim)
