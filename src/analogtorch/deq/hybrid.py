"""`HybridDEQ`: digital parameterisation → analog equilibrium core → digital head.

    u  = DAC(g_θ(x))                 digital, low precision (``QuantizedLinear``)
    z* = f_φ(z*, u)                  analog core (``cores.py``)
    y  = h_ω(ADC(z*))                digital, low precision

The equilibrium is found once per forward with the injection ``u`` fixed, in one of two ways:

``forward="solver"``
    a noise-aware solver iterates the core, whose feedback product runs on the hardware
    surrogate (DAC, quantised noisy crossbar, ADC) at every iteration;
``forward="relaxation"``
    the core settles as a circuit, ``τ dz/dt = −z + f_φ(z, u)`` (:func:`.relaxation.relax`:
    no converters inside the loop, read noise while it relaxes, a chip's devices when
    deployed), so ``z*`` is a fixed point of the continuous-time core ``f_ct`` (``f_φ``
    without its DAC/ADC).

Either way gradients reach ``θ``, ``φ`` and ``ω`` through the backward mode of
:class:`~analogtorch.deq.DEQ` (implicit by default), attached at ``z*``; for the
relaxation it differentiates the noise-free ``f_ct``, the map whose fixed point the
circuit settles to: ``dz*/dφ = (I − ∂f_ct/∂z)⁻¹ ∂f_ct/∂φ``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn

from ..hardware.profile import HardwareProfile
from ..nn.quantized import QuantizedLinear
from .backward import BackwardMode
from .cores import AnalogCore, CCCore, PICore
from .interface import Converter
from .model import DEQ
from .options import SolverOptions, SolverStats
from .relaxation import RelaxationOptions, continuous_time, relax

CoreKind = Literal["plain", "pi", "cc"]
CORE_KINDS: tuple[CoreKind, ...] = ("plain", "pi", "cc")
ForwardMode = Literal["solver", "relaxation"]
FORWARD_MODES: tuple[str, ...] = get_args(ForwardMode)


class HybridDEQ(nn.Module):
    """``y = h_ω(ADC(z*))``, ``z* = f_φ(z*, DAC(g_θ(x)))``.

    Args:
        encoder: digital parameterisation ``g_θ``: x → (batch, width).
        core: the analog core ``f_φ(z, u)`` (an :class:`AnalogCore`).
        head: digital read-out ``h_ω``: (batch, width) → output.
        solver: ``solve(f, z0, options)`` (``at.deq.SOLVERS[...]``): the forward solver,
            and the adjoint solver of the implicit backward in both forward modes.
        dac_bits, adc_bits: interface converter resolutions (``None``: ideal).
        forward_options, backward, backward_options: as in :class:`DEQ`; with
            ``forward="relaxation"``, ``forward_options`` sets the settling test (``tol``,
            ``mode``, noise floor) of the relaxation.
        forward: ``"solver"`` or ``"relaxation"`` (see the module docstring).
        relaxation: integration step and time budget of the relaxation
            (:class:`RelaxationOptions`; only with ``forward="relaxation"``).
    After a forward, ``last_state`` is ``z*`` (before the ADC) and ``last_forward_stats``
    the solver's statistics, or the relaxation's :class:`RelaxationStats` (a
    ``SolverStats`` with per-sample settling time in seconds and energy in joules).
    The relaxation draws read noise in ``train()``, with ``set_eval_noise`` and on a chip,
    as the solver's surrogate does.
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
        forward: ForwardMode = "solver",
        relaxation: RelaxationOptions | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(core, AnalogCore):
            raise TypeError(f"core must be an AnalogCore, got {type(core).__name__}")
        if forward not in FORWARD_MODES:
            raise ValueError(f"forward={forward!r}: use one of {FORWARD_MODES}")
        if relaxation is not None and forward != "relaxation":
            raise ValueError(
                f"relaxation={relaxation!r} is given but forward={forward!r}: it applies to "
                "forward='relaxation' only"
            )
        if relaxation is not None and not isinstance(relaxation, RelaxationOptions):
            raise TypeError(f"relaxation={relaxation!r}: expected a RelaxationOptions")
        self.forward_mode: ForwardMode = forward
        self.relaxation = RelaxationOptions() if relaxation is None else relaxation
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
        z_star = self.settle(u) if self.forward_mode == "relaxation" else self.deq(u)
        self.last_injection, self.last_state = u, z_star
        return self.head(self.adc(z_star))

    def settle(self, u: torch.Tensor) -> torch.Tensor:
        """``z*`` of the circuit relaxation from ``z = 0`` for the injection ``u``, with the
        backward mode's gradient of the noise-free continuous-time core attached."""
        layer = self.core.feedback
        noise = layer.training or layer.eval_noise or layer.chip_read is not None
        r = self.relaxation
        z_star, stats = relax(
            self.core,
            u,
            options=self.deq.forward_options,
            steps_per_tau=r.steps_per_tau,
            max_tau=r.max_tau,
            noise=noise,
        )
        with continuous_time(self.core, 0.0, noise=False):
            return self.deq.attach(u, z_star, stats)

    def with_forward(self, forward: ForwardMode) -> HybridDEQ:
        """A copy of this model (its own tensors, the same values) whose equilibrium is found
        by ``forward``, e.g. to cost or score a model trained one way run the other way."""
        if forward not in FORWARD_MODES:
            raise ValueError(f"forward={forward!r}: use one of {FORWARD_MODES}")
        twin = copy.deepcopy(self)
        twin.forward_mode = forward
        return twin

    def set_profile(self, profile: HardwareProfile) -> None:
        """Run the core on ``profile`` and the interface converters at its resolutions
        (a curriculum stage, or another technology for the same trained weights)."""
        self.core.feedback.set_profile(profile)
        self.dac.bits, self.adc.bits = profile.dac_bits, profile.adc_bits

    def project_(self) -> float:
        """Restore the core's contractivity after an optimizer step (see ``contractivity``)."""
        return self.core.project_()

    def extra_repr(self) -> str:
        if self.forward_mode == "solver":
            return "forward='solver'"
        r = self.relaxation
        return f"forward='relaxation', steps_per_tau={r.steps_per_tau}, max_tau={r.max_tau}"


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
    forward: ForwardMode = "solver",
    relaxation: RelaxationOptions | None = None,
    encoder: nn.Module | None = None,
    seed: int = 0,
) -> HybridDEQ:
    """A hybrid DEQ for flat inputs (images are flattened): ``QuantizedLinear`` encoder and
    head at ``digital_bits``, a ``width``-wide analog core of ``kind`` (``"plain"``: σ(Wz+u),
    ``"pi"``: with ``physics``, ``"cc"``: circuit saturation), interface converters at the
    profile's ``dac_bits`` / ``adc_bits``, and the equilibrium found by ``forward``
    (``"solver"`` or ``"relaxation"``, see :class:`HybridDEQ`). ``encoder`` replaces the
    flat encoder by another digital ``g_θ``: x → (batch, ``width``) (e.g.
    :func:`.conv_encoder.conv_encoder`). Weights are initialised from ``seed`` (the global
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
        if encoder is None:
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
        forward=forward,
        relaxation=relaxation,
    )
