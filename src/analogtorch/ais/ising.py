"""`IsingAIS`: a generator whose sampler is an analog Ising machine of bistable amplitudes.

Each unit is a parametric amplitude ``x_i`` (e.g. a degenerate optical or electrical
parametric oscillator) with the normal form of a pitchfork bifurcation:

    dx_i/dt = −x_i³ + (p_k − 1) x_i + g_k Σ_j J_ij x_j + h_{k,i}

on control segment ``k``, with a global pump ``p_k ∈ (0, pump_max)`` (threshold at
``p = 1``: an uncoupled unit decays to 0 below it and settles at ``±√(p − 1)`` above),
symmetric :class:`~analogtorch.ais.couplings.Couplings` ``J`` (``|J| <= j_max``) times the
coupling gain ``g_k ∈ (0, 1)``, and bias ``h_{k,i} ∈ (−injection_max, injection_max)``.
Amplitudes are in units of the saturation amplitude, rates per time unit (``time_unit_s``).
With ``x_max`` set, amplitudes are clipped to ``[−x_max, x_max]`` after every step (a
saturating amplifier; it also keeps explicit steps stable for large couplings).

Latent: ``x_i(0) ~ N(0, 0.1²)`` (a small amplitude around the unstable origin, as the
vacuum/thermal seed of a parametric oscillator). Readout: pixel
``clamp((x_i(T) + 1) / 2, 0, 1)``, so the two states ``±1`` of the nominal pump ``p = 2``
map to black and white (the clamp has zero gradient for ``|x| > 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from ..hardware.random import draw_like
from .integrators import Drift
from .schedule import PiecewiseConstant
from .system import AnalogInteractionSystem

LATENT_STD = 0.1


class IsingAIS(AnalogInteractionSystem):
    """Analog Ising machine as an image generator (module docstring).

    Args:
        image_shape: ``(C, H, W)``; the first ``C·H·W`` units are visible.
        pump_max: upper bound of the pump ``p_k`` (dimensionless, threshold 1).
        pump_init: initial pump of every segment.
        injection_max: bound on the bias ``|h|`` (amplitude per time unit).
        x_max: amplitude clip, ``None`` for none.
        **system: ``n_hidden``, ``segments``, ``steps_per_segment``, ``dt``, ``method``,
            ``mask``, ``mask_kwargs``, ``bits``, ``profile``, ``j_max``, ``coupling_gain``,
            ``checkpoint_every``, ``time_unit_s``, ``coupling_product``, ``seed`` of
            :class:`~analogtorch.ais.system.AnalogInteractionSystem`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        *,
        pump_max: float = 3.0,
        pump_init: float = 1.5,
        injection_max: float = 1.0,
        x_max: float | None = 2.0,
        **system: Any,
    ) -> None:
        super().__init__(image_shape, **system)
        if not injection_max > 0 or math.isinf(injection_max):
            raise ValueError(f"injection_max={injection_max}: must be finite and > 0")
        if x_max is not None and not x_max > 0:
            raise ValueError(f"x_max={x_max}: amplitude clip must be > 0 or None")
        self.x_max = x_max
        self.pump = PiecewiseConstant(self.segments, (), init=pump_init, bounds=(0.0, pump_max))
        self.bias = PiecewiseConstant(
            self.segments, (self.n_units,), bounds=(-injection_max, injection_max)
        )

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial amplitudes ``x(0) ~ N(0, 0.1²)``, shape ``(n, n_units)``."""
        ref = self.couplings.weight
        x = draw_like("normal", (n, self.n_units), generator, ref)
        return LATENT_STD * x

    def make_drift(self, couplings: torch.Tensor) -> Drift:
        """``dx/dt`` on segment ``k`` for amplitudes ``x`` (n, n_units), per time unit."""
        gain_minus_loss, bias, gains = self.pump() - 1, self.bias(), self.gains()
        product = self.product(couplings)

        def drift(k: int, x: torch.Tensor) -> torch.Tensor:
            return -(x**3) + gain_minus_loss[k] * x + self.couple(product, gains, k, x) + bias[k]

        return drift

    def projection(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Clip amplitudes to ``[−x_max, x_max]`` (``None`` without a clip)."""
        if self.x_max is None:
            return None
        return partial(torch.clamp, min=-self.x_max, max=self.x_max)

    def readout(self, visible: torch.Tensor) -> torch.Tensor:
        """Pixel ``clamp((x + 1) / 2, 0, 1)``."""
        return ((visible + 1) * 0.5).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, x_max={self.x_max}"
