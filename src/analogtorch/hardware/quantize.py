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


class _ClampRoundSTE(torch.autograd.Function):
    """``clamp(round(v), k_min, k_max)`` forward; ``grad * [k_min <= v <= k_max]`` backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, v: torch.Tensor, k_min: int, k_max: int
    ) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.bounds = (k_min, k_max)  # type: ignore[attr-defined]
        return torch.round(v).clamp_(k_min, k_max)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        (v,) = ctx.saved_tensors  # type: ignore[attr-defined]
        k_min, k_max = ctx.bounds  # type: ignore[attr-defined]
        inside = (v >= k_min) & (v <= k_max)
        return grad * inside, None, None


def integer_codes(v: torch.Tensor, bits: int, signed: bool = True) -> torch.Tensor:
    """Integer codes ``clamp(round(v))`` of a ``bits``-bit quantiser, straight-through grad.

    ``v`` is the input in units of the step; the caller multiplies the codes by the step,
    and autograd then yields the LSQ step gradient through ``v = x / step``.
    """
    k_min, k_max = code_range(bits, signed)
    return _ClampRoundSTE.apply(v, k_min, k_max)


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
        scaled = torch.clamp(x / step, k_min, k_max)
        noise = torch.rand(
            scaled.shape, generator=generator, dtype=scaled.dtype, device=scaled.device
        )
        rounded = scaled + (torch.floor(scaled + noise) - scaled).detach()
    else:
        rounded = integer_codes(x / step, bits, signed)
    return rounded * step


def weight_step(bits: int) -> float:
    """Step of a ``bits``-bit weight grid on normalised weights in [-1, 1].

    ``step = 1 / (2**(bits-1) - 1)`` maps the largest |weight| of a row exactly onto code
    ``2**(bits-1) - 1``, so no weight is clipped; the extra negative code is unused.
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"weight bits={bits}: must be an integer in [2, 16]")
    return 1.0 / ((1 << (bits - 1)) - 1)
