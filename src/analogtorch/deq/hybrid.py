"""`HybridDEQ`: digital parameterisation → analog equilibrium core → digital head.

    u  = DAC(g_θ(x))                 digital, low precision (``QuantizedLinear``)
    z* = f_φ(z*, u)                  analog core (``cores.py``), found by a noise-aware solver
    y  = h_ω(ADC(z*))                digital, low precision

The core's feedback product runs on the hardware surrogate (DAC, quantised noisy
crossbar, ADC); the solve is done once per forward with the injection ``u`` fixed, and
gradients reach ``θ``, ``φ`` and ``ω`` through the chosen backward mode of
:class:`~analogtorch.deq.DEQ` (implicit by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..hardware.profile import HardwareProfile
from ..nn.quantized import QuantizedLinear
from .backward import BackwardMode
from .cores import AnalogCore, CCCore, PICore
from .interface import Converter
from .model import DEQ
from .options import SolverOptions, SolverStats

CoreKind = Literal["plain", "pi", "cc"]
CORE_KINDS: tuple[CoreKind, ...] = ("plain", "pi", "cc")


class HybridDEQ(nn.Module):
    """``y = h_ω(ADC(z*))``, ``z* = f_φ(z*, DAC(g_θ(x)))``.

    Args:
        encoder: digital parameterisation ``g_θ``: x → (batch, width).
        core: the analog core ``f_φ(z, u)`` (an :class:`AnalogCore`).
        head: digital read-out ``h_ω``: (batch, width) → output.
        solver: ``solve(f, z0, options)`` (``at.deq.SOLVERS[...]``).
        dac_bits, adc_bits: interface converter resolutions (``None``: ideal).
        forward_options, backward, backward_options: as in :class:`DEQ`.
    After a forward, ``last_state`` is ``z*`` (before the ADC) and ``last_forward_stats``
    the solver's statistics.
    """

    def __init__(
        self,
        encoder: nn.Module,
        core: AnalogCore,
        head: nn.Module,
        solver: Callable,
        *,
        dac_bits: int | None = None,
        adc_bits: int | None = None,
        forward_options: SolverOptions | None = None,
        backward: BackwardMode = "implicit",
        backward_options: SolverOptions | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(core, AnalogCore):
            raise TypeError(f"core must be an AnalogCore, got {type(core).__name__}")
        self.encoder = encoder
        self.dac = Converter(dac_bits, kind="DAC")
        self.deq = DEQ(
            core,
            solver,
            forward_options=forward_options,
            backward=backward,
            backward_options=backward_options,
        )
        self.adc = Converter(adc_bits, kind="ADC")
        self.head = head
        self.last_state: torch.Tensor | None = None
        self.last_injection: torch.Tensor | None = None

    @property
    def core(self) -> AnalogCore:
        return self.deq.f_module  # type: ignore[return-value]

    @property
    def last_forward_stats(self) -> SolverStats | None:
        return self.deq.last_forward_stats

    def injection(self, x: torch.Tensor) -> torch.Tensor:
        """``u = DAC(g_θ(x))``, (batch, width)."""
        return self.dac(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.injection(x)
        z_star = self.deq(u)
        self.last_injection, self.last_state = u, z_star
        return self.head(self.adc(z_star))

    def set_profile(self, profile: HardwareProfile) -> None:
        """Run the core on ``profile`` and the interface converters at its resolutions
        (a curriculum stage, or another technology for the same trained weights)."""
        self.core.feedback.set_profile(profile)
        self.dac.bits, self.adc.bits = profile.dac_bits, profile.adc_bits

    def project_(self) -> float:
        """Restore the core's contractivity after an optimizer step (see ``contractivity``)."""
        return self.core.project_()


def build_hybrid_deq(
    in_features: int,
    out_features: int,
    profile: HardwareProfile,
    *,
    width: int = 128,
    kind: CoreKind = "plain",
    activation: str = "tanh",
    physics: nn.Module | None = None,
    digital_bits: int | None = 8,
    contraction: float = 0.9,
    solver: str | Callable = "anderson",
    forward_options: SolverOptions | None = None,
    backward: BackwardMode = "implicit",
    backward_options: SolverOptions | None = None,
    seed: int = 0,
) -> HybridDEQ:
    """A hybrid DEQ for flat inputs (images are flattened): ``QuantizedLinear`` encoder and
    head at ``digital_bits``, a ``width``-wide analog core of ``kind`` (``"plain"``: σ(Wz+u),
    ``"pi"``: with ``physics``, ``"cc"``: circuit saturation), interface converters at the
    profile's ``dac_bits`` / ``adc_bits``. Weights are initialised from ``seed`` (the global
    RNG is left untouched)."""
    from . import SOLVERS

    if kind not in CORE_KINDS:
        raise ValueError(f"kind={kind!r}: use one of {CORE_KINDS}")
    if (kind == "pi") != (physics is not None):
        raise ValueError("kind='pi' needs physics=P(z, u), and only 'pi' takes one")
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r}: use one of {sorted(SOLVERS)}")
        solver = SOLVERS[solver]
    core_args = {"contraction": contraction, "noise_seed": seed}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = nn.Sequential(
            nn.Flatten(), QuantizedLinear(in_features, width, weight_bits=digital_bits)
        )
        if kind == "pi":
            core: AnalogCore = PICore(width, profile, physics, activation=activation, **core_args)
        elif kind == "cc":
            core = CCCore(width, profile, **core_args)
        else:
            core = AnalogCore(width, profile, activation=activation, **core_args)
        head = QuantizedLinear(width, out_features, weight_bits=digital_bits)
    return HybridDEQ(
        encoder,
        core,
        head,
        solver,
        dac_bits=profile.dac_bits,
        adc_bits=profile.adc_bits,
        forward_options=forward_options,
        backward=backward,
        backward_options=backward_options,
    )
