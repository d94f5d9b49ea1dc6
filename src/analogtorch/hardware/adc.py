"""The per-tile ADC read-out of crossbar partial sums, fused with the read-out noise.

The caller folds the ADC's codes-per-unit ``c`` (and any per-column digital gain) into the
weights of the product, so the partial sums ``U`` arrive in ADC codes; the read-out noise
arrives as a standard deviation ``sigma`` in codes with standard normals ``eps``::

    u = U + sigma * eps
    y = sum_t clamp(round(u_t), k_min, k_max)          (codes summed over the tile axis)

Gradients are straight-through for the rounding and zero where the clamp saturates
(``quantize.py``): with ``g_u = dL/dy`` where ``k_min - m <= u <= k_max + m`` and 0
elsewhere, ``dL/dU = g_u`` and ``dL/dsigma = sum g_u eps`` (over the axes ``sigma`` is
broadcast along). The LSQ gradient of a learned ``c`` then flows through the scaled
weights: ``dL/dc = sum g_u U / c``.

One autograd node: the forward overwrites the product's temporary ``U`` with ``u`` (the
product's own backward never reads its output) and keeps ``u`` (and ``eps`` only when
``sigma`` is differentiated) for the backward.
"""

from __future__ import annotations

import torch

from .quantize import STE_MARGIN, code_range

Scale = torch.Tensor | float


def _noisy(partial: torch.Tensor, sigma: Scale | None, eps: torch.Tensor | None) -> torch.Tensor:
    """``u = U + sigma * eps``, written over ``partial``."""
    if eps is None:
        return partial
    if isinstance(sigma, torch.Tensor):
        return partial.addcmul_(sigma, eps)
    return partial.add_(eps, alpha=sigma)  # type: ignore[arg-type]


def _tile_sum(codes: torch.Tensor, tile_dim: int) -> torch.Tensor:
    """Sum over the tile axis. Channels-last convolution codes (B, T, out, H, W) are summed
    as the contiguous (B*H*W, T, out) view they are, which keeps the output channels-last
    (a plain ``sum(1)`` over the strided tile axis is 3x slower and returns NCHW)."""
    if codes.dim() == 5 and tile_dim == 1:
        moved = codes.permute(0, 3, 4, 1, 2)  # (B, H, W, T, out)
        if moved.is_contiguous():
            batch, height, width, tiles, n_out = moved.shape
            summed = moved.view(-1, tiles, n_out).sum(1)
            return summed.view(batch, height, width, n_out).permute(0, 3, 1, 2)
    return codes.sum(tile_dim)


class _AdcTileSum(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        partial: torch.Tensor,
        sigma: Scale | None,
        eps: torch.Tensor | None,
        bits: int,
        tile_dim: int,
    ) -> torch.Tensor:
        k_min, k_max = code_range(bits)
        u = _noisy(partial, sigma, eps)
        learned_sigma = isinstance(sigma, torch.Tensor) and sigma.requires_grad
        ctx.save_for_backward(u, sigma if learned_sigma else None, eps if learned_sigma else None)
        ctx.bounds = (k_min - STE_MARGIN, k_max + STE_MARGIN)  # type: ignore[attr-defined]
        ctx.tile_dim = tile_dim  # type: ignore[attr-defined]
        return _tile_sum(u.clamp(k_min, k_max).round_(), tile_dim)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        u, sigma, eps = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_u = grad.unsqueeze(ctx.tile_dim).expand_as(u)  # type: ignore[attr-defined]
        if grad.requires_grad:  # double backward (create_graph): the differentiable op
            g_u = torch.ops.aten.hardtanh_backward(grad_u, u, *ctx.bounds)  # type: ignore[attr-defined]
        else:  # written in the layout of u (channels-last for a convolution)
            g_u = torch.empty_like(u)
            torch.ops.aten.hardtanh_backward.grad_input(grad_u, u, *ctx.bounds, grad_input=g_u)  # type: ignore[attr-defined]
        g_sigma = None
        if sigma is not None and ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            g_sigma = (g_u * eps).sum_to_size(sigma.shape)
        return g_u, g_sigma, None, None, None


def adc_tile_sum(
    partial: torch.Tensor,
    bits: int,
    tile_dim: int,
    *,
    sigma: Scale | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """ADC codes of noisy partial sums (in codes) summed over ``tile_dim`` (module docstring).

    ``partial`` must be a temporary of the caller: it is overwritten. ``sigma`` and ``eps``
    (standard normal, the shape of ``partial``) go together; ``sigma`` broadcasts to it.
    """
    if (sigma is None) != (eps is None):
        raise ValueError("adc_tile_sum: give both sigma and eps, or neither")
    tracking = torch.is_grad_enabled() and (
        partial.requires_grad or (isinstance(sigma, torch.Tensor) and sigma.requires_grad)
    )
    if tracking:
        return _AdcTileSum.apply(partial, sigma, eps, bits, tile_dim)
    k_min, k_max = code_range(bits)
    return _tile_sum(_noisy(partial, sigma, eps).clamp_(k_min, k_max).round_(), tile_dim)
