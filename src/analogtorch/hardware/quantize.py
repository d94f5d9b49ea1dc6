"""Uniform quantisers with straight-through gradients (weights, DAC and ADC share them).

A ``b``-bit signed quantiser has exactly ``2**b`` levels ``k * step`` with integer codes
``k in [-2**(b-1), 2**(b-1) - 1]`` (two's complement, as an ADC or an int-b tensor);
the unsigned one has codes ``k in [0, 2**b - 1]``. Forward: ``q(x) = step * clamp(round(x /
step), k_min, k_max)``. Backward: the rounding is a straight-through identity, so
``dq/dx = 1`` inside the range and ``0`` where the clamp saturates, and, when ``step`` is a
learned tensor, ``dq/dstep = round(x/step) - x/step`` inside and ``k_min`` or ``k_max``
outside — the LSQ gradient of Esser et al., "Learned Step Size Quantization", ICLR 2020.
"""

from __future__ import annotations

import torch

from .random import draw_like

# Straight-through window: the rounding gradient passes for ``k_min - m <= u <= k_max + m``,
# a thousandth of a code beyond the end codes so that a value mapped exactly onto an end
# code (a row maximum onto ``k_max``) still learns.
STE_MARGIN = 1e-3


class _ScaledCodes(torch.autograd.Function):
    """``clamp(round(x * c), k_min, k_max)`` with straight-through gradients.

    Backward with ``u = x * c`` and ``g_u = g * [k_min - m ≤ u ≤ k_max + m]`` (one fused
    ``hardtanh_backward`` pass; ``m = STE_MARGIN``): ``dL/dx = g_u c`` and
    ``dL/dc = sum(g_u x)`` (the LSQ step gradient). Only ``x`` is kept (usually alive
    anyway, as the previous layer's output); ``u`` is recomputed in the backward.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        c: torch.Tensor | float,
        k_min: int,
        k_max: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, c if isinstance(c, torch.Tensor) else None)
        ctx.scalar_c = None if isinstance(c, torch.Tensor) else c  # type: ignore[attr-defined]
        ctx.bounds = (k_min - STE_MARGIN, k_max + STE_MARGIN)  # type: ignore[attr-defined]
        return (x * c).clamp_(k_min, k_max).round_()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, c_tensor = ctx.saved_tensors  # type: ignore[attr-defined]
        c = c_tensor if c_tensor is not None else ctx.scalar_c  # type: ignore[attr-defined]
        g_u = torch.ops.aten.hardtanh_backward(grad, x * c, *ctx.bounds)  # type: ignore[attr-defined]
        g_c = None
        if c_tensor is not None and ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            if c_tensor.numel() == 1 and g_u.shape == x.shape:  # one fused dot
                g_c = torch.dot(g_u.reshape(-1), x.reshape(-1)).reshape(c_tensor.shape)
            else:
                g_c = (g_u * x).sum_to_size(c_tensor.shape)
        g_x = g_u.mul_(c) if ctx.needs_input_grad[0] else None  # type: ignore[attr-defined]
        return g_x, g_c, None, None


def integer_codes(
    x: torch.Tensor,
    c: torch.Tensor | float,
    bits: int,
    signed: bool = True,
    *,
    overwrite_input: bool = False,
) -> torch.Tensor:
    """Integer codes ``clamp(round(x * c))`` of a ``bits``-bit quantiser, STE gradients.

    ``c`` is the inverse step (codes per unit of ``x``); the caller multiplies the codes by
    the step, and the gradient w.r.t. a learned ``c`` then gives the LSQ step gradient.
    ``overwrite_input=True`` lets an inference call (no autograd) reuse ``x``'s memory,
    for callers whose ``x`` is a temporary.
    """
    k_min, k_max = code_range(bits, signed)
    tracking = torch.is_grad_enabled() and (
        x.requires_grad or (isinstance(c, torch.Tensor) and c.requires_grad)
    )
    if not tracking:
        u = x.mul_(c) if overwrite_input else x * c
        return u.round_().clamp_(k_min, k_max)
    return _ScaledCodes.apply(x, c, k_min, k_max)


def code_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """Smallest and largest integer code of a ``bits``-bit quantiser."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits={bits}: must be an integer in [1, 16]")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def quantize(
    x: torch.Tensor,
    bits: int,
    step: float | torch.Tensor,
    *,
    signed: bool = True,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantise ``x`` to ``2**bits`` uniform levels of spacing ``step`` (same units as x).

    Deterministic rounding is round-half-to-even. Stochastic rounding draws
    ``floor(x/step + u)``, ``u ~ U[0, 1)`` from ``generator``, which is unbiased:
    ``E[q(x)] = x`` inside the range. Gradients are straight-through (module docstring).
    """
    if stochastic:
        k_min, k_max = code_range(bits, signed)
        dither = draw_like("uniform", x.shape, generator, x)  # a CPU generator also for GPU x
        rounded = grid_codes(x, 1.0 / step, k_min, k_max, dither)
    else:
        rounded = integer_codes(x, 1.0 / step, bits, signed)
    return rounded * step


def round_codes_(
    u: torch.Tensor,
    k_min: int | torch.Tensor,
    k_max: int | torch.Tensor,
    dither: torch.Tensor | None = None,
) -> torch.Tensor:
    """``clamp(rnd(u), k_min, k_max)`` in place (no autograd), ``u`` in codes.

    ``rnd`` is round-half-to-even, or, given ``dither`` (``U[0, 1)`` draws of ``u``'s
    shape), stochastic rounding ``floor(u + dither)``: ``ceil(u)`` with probability equal
    to the fractional part ``f = u - floor(u)``, so ``E[rnd(u)] = u`` and ``Var[rnd(u)] =
    f (1 - f)`` codes². The clamp comes last, so a sum ``u + dither`` rounded up in floating
    point cannot leave the range. The bounds are both ints or both tensors (per row).
    """
    rounded = u.round_() if dither is None else u.add_(dither).floor_()
    return rounded.clamp_(k_min, k_max)


def grid_codes(
    x: torch.Tensor,
    c: torch.Tensor | float,
    k_min: int | torch.Tensor,
    k_max: int | torch.Tensor,
    dither: torch.Tensor | None = None,
    *,
    margin: float = 0.0,
) -> torch.Tensor:
    """Codes ``clamp(rnd(x c), k_min, k_max)`` (:func:`round_codes_`) with ``c`` codes per
    unit of ``x``, differentiable: straight-through, ``d codes / dx = c`` where ``k_min -
    margin <= x c <= k_max + margin`` and 0 where the clamp saturates beyond that
    (``d codes / dc = x`` inside, the LSQ gradient of the module docstring). The forward
    value is exactly the integer codes.
    """
    scaled = x * c
    inside = scaled.clamp(k_min - margin, k_max + margin)
    c_value = c.detach() if isinstance(c, torch.Tensor) else c
    codes = round_codes_(x.detach() * c_value, k_min, k_max, dither)
    return codes + (inside - inside.detach())


def weight_step(bits: int) -> float:
    """Step of a ``bits``-bit weight grid on normalised weights in [-1, 1].

    ``step = 1 / (2**(bits-1) - 1)`` maps the largest |weight| of a row exactly onto code
    ``2**(bits-1) - 1``, so no weight is clipped; the extra negative code is unused.
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"weight bits={bits}: must be an integer in [2, 16]")
    return 1.0 / ((1 << (bits - 1)) - 1)
