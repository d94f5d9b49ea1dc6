"""The weights a training forward multiplies by, as one autograd node.

For digital weights ``W`` (out, n) with row scales ``s`` (digital, not differentiated):

    w_hat = Q(W / s)                           quantised (``weight_bits``, on the grid and
                                               with the rounding of ``mapping.py``) and
                                               clipped (``weight_range``) normalised weights
    w     = w_hat + sigma(w_hat) z             one per-batch draw of programming noise and
                                               mismatch (``noise.weight_space_noise``), or
                                               w_hat when no noise is drawn in weight space
    P     = c * w                              c: ADC codes per unit (scalar or per row)

Backward (straight-through rounding, zero gradient where the clip saturates):
``dL/dW = (dL/dP) c (1 + z dsigma/dw) [|W/s| <= 1] / s`` and ``dL/dc = sum dL/dP * w``.
The backward keeps the noise slope ``1 + z dsigma/dw`` (for a conductance-dependent sigma)
and the clip mask (booleans, with a fixed range): ``s`` and ``c`` exist anyway and ``P`` is
kept by the crossbar product, so a layer's weight path costs at most one tensor of the
weight's size instead of the four the step-by-step graph keeps.
"""

from __future__ import annotations

import torch

from .mapping import weight_clip_limit, weight_grid
from .noise import weight_noise_draw
from .profile import HardwareProfile
from .quantize import round_codes_, weight_step


def _normalized(
    weight: torch.Tensor,
    scale: torch.Tensor,
    profile: HardwareProfile,
    dither: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``w_hat = Q(W / s)`` (the arithmetic of ``mapping.normalized_weights``, so the two
    agree bit for bit; stochastic rounding given ``dither``) and, with a fixed weight
    range, the mask ``|W / s| <= limit``."""
    w_hat = weight / scale
    mask = None
    if profile.weight_range is not None:
        limit = weight_clip_limit(profile)
        mask = w_hat.abs() <= limit
        w_hat.clamp_(-limit, limit)
    if profile.weight_bits is None:
        return w_hat, mask
    if dither is None and profile.weight_quant == "symmetric":
        step = weight_step(profile.weight_bits)
        return w_hat.mul_(1.0 / step).round_().mul_(step), mask
    c, k_min, k_max = weight_grid(w_hat, profile)
    return round_codes_(w_hat.mul_(c), k_min, k_max, dither).mul_(1.0 / c), mask


class _ProductWeights(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        weight: torch.Tensor,
        scale: torch.Tensor,
        column: torch.Tensor | float,
        z: torch.Tensor | None,
        profile: HardwareProfile,
        dither: torch.Tensor | None,
    ) -> torch.Tensor:
        w, mask = _normalized(weight, scale, profile, dither)
        factor = None  # 1 + z dsigma/dw, None where it is 1
        if z is not None:
            w, factor = weight_noise_draw(w, z, profile, slope=True)
        product = w.mul_(column)
        # The product is kept by the crossbar product's backward anyway: no extra memory.
        ctx.save_for_backward(
            scale, column if isinstance(column, torch.Tensor) else None, factor, mask, product
        )
        ctx.scalar_column = None if isinstance(column, torch.Tensor) else column  # type: ignore[attr-defined]
        return product

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None, None, None]:
        scale, column_tensor, factor, mask, product = ctx.saved_tensors  # type: ignore[attr-defined]
        column = column_tensor if column_tensor is not None else ctx.scalar_column  # type: ignore[attr-defined]
        g_column = None
        if column_tensor is not None and ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            if column_tensor.numel() == 1:  # dL/dc = sum(g * w) = sum(g * P) / c
                g_column = torch.dot(grad.reshape(-1), product.reshape(-1)) / column_tensor
                g_column = g_column.reshape(column_tensor.shape)
            else:
                g_column = (grad * product).sum_to_size(column_tensor.shape) / column_tensor
        if not ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            return None, None, g_column, None, None, None
        g_weight = grad * (column / scale)
        if factor is not None:
            g_weight.mul_(factor)
        if mask is not None:
            g_weight.mul_(mask)
        return g_weight, None, g_column, None, None, None


def product_weights(
    weight: torch.Tensor,
    scale: torch.Tensor,
    column: torch.Tensor | float,
    z: torch.Tensor | None,
    profile: HardwareProfile,
    dither: torch.Tensor | None = None,
) -> torch.Tensor:
    """``c * (Q(W / s) + sigma z)`` of flat weights (out, n) (module docstring).

    ``scale``: (out, 1) row scales; ``column``: ADC codes per unit, a scalar or (out, 1);
    ``z``: standard normals of the weights' shape for a per-batch noise draw, or None;
    ``dither``: ``U[0, 1)`` draws of the weights' shape to round ``Q`` stochastically
    (``weight_rounding='stochastic'`` in training), or None for nearest rounding.
    """
    return _ProductWeights.apply(weight, scale, column, z, profile, dither)
