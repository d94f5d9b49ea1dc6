"""Piecewise-constant control schedules over the integration horizon of an AIS sampler.

The horizon ``[0, T]`` of a sampler run is cut into ``K`` equal segments; a schedule holds
one learnable value (a tensor of any ``shape``) per segment, so that

    u(t) = u_k   for   t in [k T / K, (k + 1) T / K),   k = 0 … K − 1,

as a DAC-driven bias, injection or coupling gain would be held between control updates.
``K = 1`` is a constant parameter. Segments switch on integration-step boundaries (step
``s`` of ``steps_per_segment`` steps per segment lies in segment ``s // steps_per_segment``),
so inside one step the drift has no explicit time dependence and RK4 keeps its order.

A physical range ``low < u < high`` is enforced smoothly by storing an unconstrained ``raw``
parameter and mapping ``u = low + (high − low) · sigmoid(raw)``; gradients never vanish at
the bounds. With symmetric bounds ``raw = 0`` gives exactly ``u = 0``.
"""

from __future__ import annotations

import torch
from torch import nn


class PiecewiseConstant(nn.Module):
    """``K`` learnable segment values ``u_k`` of shape ``shape`` (units of the quantity).

    ``forward()`` returns all values, shape ``(K, *shape)``; ``value(k)`` one segment's;
    ``segment_of(step, steps_per_segment)`` the segment of an integration step.
    """

    def __init__(
        self,
        segments: int,
        shape: tuple[int, ...] = (),
        *,
        init: float | torch.Tensor = 0.0,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(segments, int) or segments < 1:
            raise ValueError(f"segments={segments!r}: must be an integer >= 1 (1 = constant)")
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"bounds={bounds}: need low < high")
        self.segments = segments
        self.shape = tuple(shape)
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))
        self.raw = nn.Parameter(torch.zeros(segments, *self.shape))
        self.set_values(init)

    def forward(self) -> torch.Tensor:
        """All segment values ``u_k``, shape ``(K, *shape)``."""
        if self.bounds is None:
            return self.raw
        low, high = self.bounds
        return low + (high - low) * torch.sigmoid(self.raw)

    def value(self, segment: int) -> torch.Tensor:
        """Value ``u_k`` of segment ``k`` (shape ``shape``)."""
        if not 0 <= segment < self.segments:
            raise ValueError(f"segment={segment}: must be in [0, {self.segments - 1}]")
        return self()[segment]

    def segment_of(self, step: int, steps_per_segment: int) -> int:
        """Segment ``min(step // steps_per_segment, K − 1)`` of integration step ``step``."""
        return min(step // steps_per_segment, self.segments - 1)

    @torch.no_grad()
    def set_values(self, values: float | torch.Tensor) -> None:
        """Set the segment values (broadcast to ``(K, *shape)``, strictly inside the bounds)."""
        target = torch.as_tensor(values, dtype=self.raw.dtype, device=self.raw.device)
        target = target.expand_as(self.raw)
        if self.bounds is None:
            self.raw.copy_(target)
            return
        low, high = self.bounds
        if not bool(((target > low) & (target < high)).all()):
            raise ValueError(
                f"schedule values must lie strictly inside bounds ({low}, {high}); got range "
                f"[{target.min().item():.4g}, {target.max().item():.4g}]"
            )
        self.raw.copy_(torch.logit((target - low) / (high - low)))

    def extra_repr(self) -> str:
        return f"segments={self.segments}, shape={self.shape}, bounds={self.bounds}"
