"""The per-tile ADC read-out of crossbar partial sums, fused with the read-out noise.

The caller folds the ADC's codes-per-unit ``c`` (and any per-column digital gain) into the
weights of the product, so the partial sums ``U`` arrive in ADC codes; the read-out noise
arrives as a standard deviation ``sigma`` in codes with standard normals ``eps``::

    u = U + sigma * eps
    y = sum_t clamp(round(u_t), k_min, k_max)          (codes summed over the tile axis)

Gradients are straight-through for the rounding and zero where the clamp saturates:
with ``g_u = dL/dy`` where ``k_min <= u <= k_max`` and 0 elsewhere, ``dL/dU = g_u`` and
``dL/dsigma = sum g_u eps`` (over the axes ``sigma`` is broadcast along). The LSQ gradient
of a learned ``c`` then flows through the scaled weights: ``dL/dc = sum g_u U / c``.

One autograd node: the forward overwrites the product's temporary ``U`` with ``u`` (the
product's own backward never reads its output) and keeps only a boolean mask of the
unclamped partial sums (and ``eps`` when ``sigma`` is differentiated) for the backward.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .quantize import code_range

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
    if codes.shape[tile_dim] == 1:
        return codes.squeeze(tile_dim)
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
        clamped = u.clamp(k_min, k_max)
        inside = torch.eq(clamped, u)  # 1 byte per partial sum is all the backward keeps
        if not (isinstance(sigma, torch.Tensor) and sigma.requires_grad):
            sigma = eps = None  # a given noise magnitude: nothing more to keep
        ctx.save_for_backward(inside, sigma, eps)
        ctx.tile_dim = tile_dim  # type: ignore[attr-defined]
        return _tile_sum(clamped.round_(), tile_dim)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        inside, sigma, eps = ctx.saved_tensors  # type: ignore[attr-defined]
        if inside.dim() == 5 and not inside.is_contiguous():  # channels-last convolution:
            grad = grad.contiguous(memory_format=torch.channels_last)  # its layout, once
        grad_u = grad.unsqueeze(ctx.tile_dim).expand(inside.shape)  # type: ignore[attr-defined]
        zero = grad.new_zeros(())  # where() reads the mask as it is (a product casts it)
        if grad.requires_grad:  # double backward (create_graph): differentiable ops only
            g_u = torch.where(inside, grad_u, zero)
        else:  # written in the layout of the partial sums (channels-last for a convolution)
            g_u = torch.where(inside, grad_u, zero, out=torch.empty_like(inside, dtype=grad.dtype))
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


def adc_sum_of_tiles(
    products: Iterable[torch.Tensor],
    bits: int,
    *,
    sigma: Scale | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`adc_tile_sum` over tile products that arrive one at a time (no autograd),
    tile axis first in ``sigma`` and ``eps``; each product is overwritten."""
    k_min, k_max = code_range(bits)
    total = None
    for t, partial in enumerate(products):
        per_tile = isinstance(sigma, torch.Tensor) and sigma.dim() > 0
        tile_sigma = sigma[t] if per_tile else sigma  # type: ignore[index]
        codes = _noisy(partial, tile_sigma, None if eps is None else eps[t])
        codes = codes.clamp_(k_min, k_max).round_()
        total = codes if total is None else total.add_(codes)
    assert total is not None
    return total


class _DigitalRescale(torch.autograd.Function):
    """``z = y s + b`` keeping ``z`` (which the next layer keeps anyway) instead of ``y``:
    ``dL/dy = g s``, ``dL/ds = sum g (z - b) / s``, ``dL/db = sum g``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        y: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        z = y * scale if bias is None else torch.addcmul(bias, y, scale)
        ctx.save_for_backward(z, scale, bias)
        return z

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        z, scale, bias = ctx.saved_tensors  # type: ignore[attr-defined]
        g_y = grad * scale if ctx.needs_input_grad[0] else None  # type: ignore[attr-defined]
        g_scale = g_bias = None
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            scaled = z if bias is None else z - bias
            g_scale = (grad * scaled).sum_to_size(scale.shape) / scale
        if bias is not None and ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            g_bias = grad.sum_to_size(bias.shape)
        return g_y, g_scale, g_bias


def digital_rescale(
    y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The digital side of a read-out, ``y * scale + bias`` (``scale > 0``, broadcast per
    output). With autograd it keeps only its output; without, it works in place on ``y``
    (a temporary of the caller)."""
    tracking = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (y, scale, bias)
    )
    if tracking:
        return _DigitalRescale.apply(y, scale, bias)
    y = y.mul_(scale)
    return y if bias is None else y.add_(bias)
