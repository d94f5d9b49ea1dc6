"""`OscillatorAIS`: a generator whose sampler is a network of coupled phase oscillators.

Kuramoto-type phase dynamics with injection locking, in the frame rotating at the carrier
(the reference of the injection and of the phase readout, e.g. ``f0 ~ 1 GHz``), so ``θ_i``
is the phase relative to the reference and ``ω_i`` the detuning of oscillator ``i``:

    dθ_i/dt = ω_i + g_k Σ_j J_ij sin(θ_j − θ_i) + b_{k,i} sin θ_i − k_{k,i} sin 2θ_i

on control segment ``k``, with

* ``ω_i ∈ (−omega_max, omega_max)``: learnable, constant in time;
* ``J``: symmetric :class:`~analogtorch.ais.couplings.Couplings` (``|J| <= j_max``) times
  the coupling gain ``g_k ∈ (0, 1)``; the sum is two matrix products,
  ``Σ_j J_ij sin(θ_j − θ_i) = cos θ_i (J sin θ)_i − sin θ_i (J cos θ)_i``;
* ``b_{k,i} ∈ (−injection_max, injection_max)``: first-harmonic injection (bias);
* ``k_{k,i} ∈ (−injection_max, injection_max)``: second-harmonic injection locking (SHIL),
  which makes the phases bistable at 0 and π (``k > 0``) or at ±π/2 (``k < 0``, the SHIL
  reference shifted by a quarter period).

All rates are in rad per time unit (``time_unit_s``, default 1 ns, so ``1.0`` is 1 rad/ns).
Latent (``latent_dim = n_units``), by ``initial_phase``:

* ``"uniform"``: ``θ_i(0) ~ U[0, 2π)``, the free-running phases at power-on;
* ``"quarter"``: ``θ_i(0) = π/2 + σ ε_i``, ``ε_i ~ N(0, 1)``, ``σ = phase_spread`` (rad): the
  oscillators are first locked to the reference shifted by a quarter period, then released
  with a small thermal spread. ``π/2`` is the unstable midpoint between the SHIL states 0
  and π: an uncoupled unit near it obeys ``dε/dt ≈ ω + b + 2k ε`` and the couplings
  ``J_ij (ε_j − ε_i)``, so for ``k > 0`` the spread grows through the collective modes of
  ``J`` before each unit falls to 0 or π — the pitchfork of the Ising machine's
  ``x(0) ≈ 0`` (:mod:`~analogtorch.ais.ising`), where uniform phases start each unit
  already committed to a random state;
* ``"hidden"``: the visible units start as in ``"quarter"`` and the hidden units free-running,
  ``U[0, 2π)``: the image's randomness enters through the hidden units alone (a latent of
  ``n_hidden`` phases, as a GAN's latent vector), none of it per pixel.

Readout: pixel ``(1 − cos θ_i(T)) / 2`` of the visible units (0 in phase with the
reference, 1 in antiphase). Thermal phase noise: see :mod:`analogtorch.ais.system`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch

from ..hardware.random import draw_like
from .integrators import Drift
from .schedule import PiecewiseConstant
from .system import AnalogInteractionSystem

InitialPhase = Literal["uniform", "quarter", "hidden"]
INITIAL_PHASES: tuple[str, ...] = get_args(InitialPhase)


class OscillatorAIS(AnalogInteractionSystem):
    """Coupled phase oscillators with SHIL as an image generator (module docstring).

    Args:
        image_shape: ``(C, H, W)``; the first ``C·H·W`` units are visible.
        omega_max: bound on the detunings ``|ω_i|`` (rad per time unit).
        injection_max: bound on the injection ``|b|`` and SHIL ``|k|`` (rad per time unit).
        initial_phase: the latent, ``"uniform"``, ``"quarter"`` or ``"hidden"`` (module
            docstring).
        phase_spread: ``σ`` of the units started at the quarter phase (rad, > 0).
        **system: ``n_hidden``, ``segments``, ``steps_per_segment``, ``dt``, ``method``,
            ``mask``, ``mask_kwargs``, ``bits``, ``profile``, ``j_max``, ``coupling_gain``,
            ``checkpoint_every``, ``time_unit_s``, ``coupling_product``, ``seed`` of
            :class:`~analogtorch.ais.system.AnalogInteractionSystem`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        *,
        omega_max: float = 1.0,
        injection_max: float = 1.0,
        initial_phase: InitialPhase = "uniform",
        phase_spread: float = 0.1,
        **system: Any,
    ) -> None:
        super().__init__(image_shape, **system)
        for name, value in (("omega_max", omega_max), ("injection_max", injection_max)):
            if not value > 0 or math.isinf(value):
                raise ValueError(f"{name}={value}: must be finite and > 0 (rad per time unit)")
        if initial_phase not in INITIAL_PHASES:
            expected = ", ".join(map(repr, INITIAL_PHASES))
            raise ValueError(f"initial_phase={initial_phase!r}: expected one of {expected}")
        if not phase_spread > 0 or math.isinf(phase_spread):
            raise ValueError(f"phase_spread={phase_spread}: must be finite and > 0 (rad)")
        if initial_phase == "hidden" and self.n_hidden == 0:
            raise ValueError(
                "initial_phase='hidden' draws the latent in the hidden units: needs n_hidden >= 1"
            )
        self.initial_phase = initial_phase
        self.phase_spread = float(phase_spread)
        units, k = (self.n_units,), self.segments
        self.omega = PiecewiseConstant(1, units, bounds=(-omega_max, omega_max))
        self.bias = PiecewiseConstant(k, units, bounds=(-injection_max, injection_max))
        self.shil = PiecewiseConstant(k, units, bounds=(-injection_max, injection_max))

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial phases ``θ(0)`` (rad), shape ``(n, n_units)``: ``U[0, 2π)``, or
        ``π/2 + σ N(0, 1)`` for ``initial_phase="quarter"``, or the first for the hidden and
        the second for the visible units with ``"hidden"``."""
        ref = self.couplings.weight
        shape = (n, self.n_units)
        if self.initial_phase == "uniform":
            return (2 * math.pi) * draw_like("uniform", shape, generator, ref)
        theta = 0.5 * math.pi + self.phase_spread * draw_like("normal", shape, generator, ref)
        if self.initial_phase == "hidden":
            hidden = (n, self.n_hidden)
            free = (2 * math.pi) * draw_like("uniform", hidden, generator, ref)
            theta = torch.cat((theta[:, : self.n_visible], free), dim=1)
        return theta

    def make_drift(self, couplings: torch.Tensor) -> Drift:
        """``dθ/dt`` on segment ``k`` for phases ``θ`` (n, n_units), rad per time unit."""
        omega, bias, shil, gains = self.omega()[0], self.bias(), self.shil(), self.gains()
        product = self.product(couplings)

        def drift(k: int, theta: torch.Tensor) -> torch.Tensor:
            sin, cos = torch.sin(theta), torch.cos(theta)
            # One product of the stacked signals: a single (2n, n_units) pass through J.
            j_sin, j_cos = self.couple(product, gains, k, torch.cat((sin, cos))).chunk(2)
            coupling = cos * j_sin - sin * j_cos
            return omega + coupling + bias[k] * sin - shil[k] * (2 * sin * cos)

        return drift

    def readout(self, visible: torch.Tensor) -> torch.Tensor:
        """Pixel ``(1 − cos θ) / 2`` in ``[0, 1]``."""
        return 0.5 * (1 - torch.cos(visible))

    def extra_repr(self) -> str:
        spread = "" if self.initial_phase == "uniform" else f", phase_spread={self.phase_spread}"
        return f"{super().extra_repr()}, initial_phase={self.initial_phase!r}{spread}"
