"""Analog fixed-point cores ``f_φ(z, u)`` whose feedback product runs on the hardware model.

``u`` is the input injection ``g_θ(x)`` computed once per forward by the digital
parameterisation (so it is not recomputed on every solver iteration). With ``W_z`` an
:class:`~analogtorch.nn.AnalogLinear` (DAC, quantised noisy crossbar, ADC — the one
surrogate ``S`` of ``hardware/``):

* :class:`AnalogCore`: ``f(z, u) = σ(S(z, W_z) + u)``;
* :class:`PICore` (PI-DEQ): ``f(z, u) = σ(S(z, W_z) + u + P(z, u))`` with a physics term ``P``
  (known dynamics, a conservation law, a discretised operator) given as a module;
* :class:`CCCore` (CC-DEQ): ``f(z, u) = C(S(z, W_z) + u)`` with ``C`` the circuit's saturating
  transfer curve (:class:`CircuitSaturation`).

Each core knows its activation's Lipschitz constant ``L_σ`` and, through
:meth:`AnalogCore.project_`, keeps ``L_σ (L_dev ‖W_z‖ + L_P) ≤ γ < 1`` (``L_dev``: the
largest slope of the device's input transfer curve; ``L_P``: the physics term's Lipschitz
constant in ``z``), so the map is a contraction (see ``contractivity.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..hardware.circuit import transfer_curve
from ..hardware.profile import HardwareProfile
from ..nn.linear import AnalogLinear
from .contractivity import NORMS, NormKind, contraction_factor, project_contractive_

_ACTIVATIONS: dict[str, tuple[type[nn.Module], float]] = {
    "tanh": (nn.Tanh, 1.0),
    "relu": (nn.ReLU, 1.0),
    "identity": (nn.Identity, 1.0),
}


class CircuitSaturation(nn.Module):
    """Saturating amplifier ``C(y) = y_sat · tanh(a y / y_sat) / tanh(a)`` (state units).

    The shape is the profile's normalised ``tanh`` transfer curve
    (:func:`analogtorch.hardware.circuit.transfer_curve`, ``C(±y_sat) = ±y_sat``), with
    ``a = profile.transfer_nonlinearity`` when the profile's curve is ``"tanh"`` and
    ``nonlinearity`` otherwise. Lipschitz constant ``a / tanh(a)`` (the slope at 0).
    """

    def __init__(
        self, profile: HardwareProfile, *, saturation: float = 1.0, nonlinearity: float = 1.0
    ) -> None:
        super().__init__()
        if not saturation > 0:
            raise ValueError(f"saturation={saturation}: the rail y_sat must be > 0")
        a = profile.transfer_nonlinearity if profile.transfer_curve == "tanh" else nonlinearity
        if not a > 0:
            raise ValueError(f"nonlinearity={a}: must be > 0")
        self.saturation = float(saturation)
        self.nonlinearity = float(a)

    @property
    def lipschitz(self) -> float:
        return self.nonlinearity / math.tanh(self.nonlinearity)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.saturation * transfer_curve(y / self.saturation, "tanh", self.nonlinearity)

    def extra_repr(self) -> str:
        return f"saturation={self.saturation}, a={self.nonlinearity}"


class AnalogCore(nn.Module):
    """``f(z, u) = σ(S(z, W_z) + u)`` on a ``width × width`` analog crossbar.

    Args:
        width: state size (crossbar rows = columns = ``width``).
        profile: hardware profile of the feedback crossbar.
        activation: ``"tanh"``, ``"relu"``, ``"identity"`` or a module with a ``lipschitz``
            attribute (e.g. :class:`CircuitSaturation`).
        contraction: target factor γ in (0, 1) enforced by :meth:`project_`.
        norm: ``"spectral"`` or ``"inf"`` (see ``contractivity.py``).
        noise_seed: seed of the crossbar's training-noise stream.
    Shapes: ``z`` (batch, width), ``u`` (batch, width) → (batch, width).
    """

    def __init__(
        self,
        width: int,
        profile: HardwareProfile,
        *,
        activation: str | nn.Module = "tanh",
        contraction: float = 0.9,
        norm: NormKind = "spectral",
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width={width}: must be >= 1")
        if not 0 < contraction < 1:
            raise ValueError(f"contraction={contraction}: must be in (0, 1) for a unique z*")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: use one of {NORMS}")
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(
                    f"activation={activation!r}: use one of {sorted(_ACTIVATIONS)} or a module"
                )
            module_type, lipschitz = _ACTIVATIONS[activation]
            activation = module_type()
        else:
            lipschitz = getattr(activation, "lipschitz", None)
            if lipschitz is None:
                raise TypeError(
                    f"activation {type(activation).__name__} has no 'lipschitz' attribute: "
                    "contractivity needs its Lipschitz constant"
                )
        self.activation = activation
        self.activation_lipschitz = float(lipschitz)
        self.width = width
        self.contraction = float(contraction)
        self.norm: NormKind = norm
        self.feedback = AnalogLinear(
            width, width, bias=False, profile=profile, noise_seed=noise_seed
        )
        # The solve starts from z = 0, which must not set the DAC range: the state lives
        # in the activation's range (|σ| ≤ 1 for tanh, ≤ y_sat for the circuit curve).
        with torch.no_grad():
            self.feedback.input_range.fill_(float(getattr(activation, "saturation", 1.0)))
            self.feedback.input_range_initialized.fill_(True)
        self.project_()

    def physics_lipschitz(self) -> float:
        """Lipschitz constant of the extra term in ``z`` (0 without one)."""
        return 0.0

    def device_lipschitz(self) -> float:
        """Largest slope of the crossbar's input transfer curve (``hardware.circuit``):
        ``a / tanh(a)`` for the ``sinh`` and ``tanh`` curves (at ``|v| = 1`` and 0), 1 if linear."""
        profile = self.feedback.profile
        if profile.transfer_curve == "linear":
            return 1.0
        a = profile.transfer_nonlinearity
        return a / math.tanh(a)

    def weight_bound(self) -> float:
        """Largest ``‖W_z‖`` that keeps the map a ``γ``-contraction:
        ``L_σ (L_dev ‖W_z‖ + L_P) ≤ γ``."""
        bound = (
            self.contraction / self.activation_lipschitz - self.physics_lipschitz()
        ) / self.device_lipschitz()
        if not bound > 0:
            raise ValueError(
                f"contraction={self.contraction} is unreachable: the activation "
                f"(L={self.activation_lipschitz:.3g}) and physics term "
                f"(L={self.physics_lipschitz():.3g}) alone exceed it"
            )
        return bound

    def project_(self) -> float:
        """Project ``W_z`` onto ``‖W_z‖ ≤ weight_bound()``; returns ``‖W_z‖`` before."""
        return project_contractive_(self.feedback.weight, self.weight_bound(), self.norm)

    def contraction_bound(self) -> float:
        """Guaranteed factor ``L_σ (L_dev ‖W_z‖ + L_P)`` of the map (ideal weights)."""
        weight_part = contraction_factor(self.feedback.weight, self.device_lipschitz(), self.norm)
        return self.activation_lipschitz * (weight_part + self.physics_lipschitz())

    def state_shape(self, u: torch.Tensor) -> tuple[int, int]:
        return (u.shape[0], self.width)

    def preactivation(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.feedback(z) + u

    def forward(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.activation(self.preactivation(z, u))

    def extra_repr(self) -> str:
        return f"width={self.width}, contraction={self.contraction}, norm={self.norm!r}"


class PICore(AnalogCore):
    """PI-DEQ core ``f(z, u) = σ(S(z, W_z) + u + P(z, u))``.

    ``physics`` is a module ``P(z, u) -> (batch, width)`` (digital or analog); give it a
    float attribute ``lipschitz`` (its Lipschitz constant in ``z``) so that
    :meth:`project_` can keep the whole map contractive; without one it counts as 0 and
    the guarantee covers only ``W_z``.
    """

    def __init__(self, width: int, profile: HardwareProfile, physics: nn.Module, **kwargs) -> None:
        if not isinstance(physics, nn.Module):
            raise TypeError(f"physics must be an nn.Module P(z, u), got {type(physics).__name__}")
        self._physics_lipschitz = float(getattr(physics, "lipschitz", 0.0))
        super().__init__(width, profile, **kwargs)
        self.physics = physics

    def physics_lipschitz(self) -> float:
        return self._physics_lipschitz

    def preactivation(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.feedback(z) + u + self.physics(z, u)


class CCCore(AnalogCore):
    """CC-DEQ core ``f(z, u) = C(S(z, W_z) + u)``, ``C`` the circuit's saturating transfer
    curve (:class:`CircuitSaturation` from ``profile``); noise and precision come from ``S``."""

    def __init__(
        self,
        width: int,
        profile: HardwareProfile,
        *,
        saturation: float = 1.0,
        nonlinearity: float = 1.0,
        **kwargs,
    ) -> None:
        if "activation" in kwargs:
            raise TypeError("CCCore's activation is the circuit's transfer curve; do not pass one")
        curve = CircuitSaturation(profile, saturation=saturation, nonlinearity=nonlinearity)
        super().__init__(width, profile, activation=curve, **kwargs)
