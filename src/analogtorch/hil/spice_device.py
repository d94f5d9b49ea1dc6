"""The I-V law of one crossbar device in an ngspice netlist (SI units throughout).

A device of conductance ``G`` (siemens) across a voltage ``V`` (volts) carries, in amperes,

    I = G v_ref f(V / v_ref),   f(v) = sinh(a v) / sinh(a)  |  tanh(a v) / tanh(a)  |  v

the hardware model's normalised transfer curve
(:func:`analogtorch.hardware.circuit.transfer_curve`, nonlinearity ``a``) with ``v_ref`` the
read voltage of a full-scale input (``v_read_volts``): ``f(±1) = ±1``, so a device at
``V = ±v_ref`` carries ``±G v_ref`` as a resistor would, and the surrogate's currents
``g_max v_read sum_i w_hat_i f(x_hat_i)`` are the circuit's for ``V_i = v_read x_hat_i``. A
linear device is a resistor ``1/G``; a nonlinear one an ngspice behavioural current source
(B-source) whose current is the expression above of its two node voltages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..hardware.profile import HardwareProfile, TransferCurve

_DENOMINATOR = {"sinh": math.sinh, "tanh": math.tanh}


@dataclass(frozen=True)
class DeviceIV:
    """Device current law ``I = G v_ref f(V / v_ref)`` (module docstring).

    Attributes:
        curve: ``"linear"`` (a resistor), ``"sinh"`` or ``"tanh"``.
        nonlinearity: ``a`` of the curve, > 0 for ``sinh``/``tanh``, 0 for ``linear``.
        v_ref_volts: normalising voltage, volts (the profile's ``v_read_volts``).
    """

    curve: TransferCurve = "linear"
    nonlinearity: float = 0.0
    v_ref_volts: float = 1.0

    def __post_init__(self) -> None:
        if self.curve not in ("linear", *_DENOMINATOR):
            raise ValueError(
                f"curve={self.curve!r} is not allowed; expected 'linear', 'sinh' or 'tanh'"
            )
        a = self.nonlinearity
        if self.curve == "linear" and a != 0.0:
            raise ValueError(f"nonlinearity={a!r} with curve='linear': expected 0")
        if self.curve != "linear" and not (math.isfinite(a) and a > 0):
            raise ValueError(
                f"nonlinearity={a!r} with curve={self.curve!r}: expected a finite value > 0"
            )
        if not (math.isfinite(self.v_ref_volts) and self.v_ref_volts > 0):
            raise ValueError(
                f"v_ref_volts={self.v_ref_volts!r} is not allowed; expected a finite value > 0 V"
            )

    @classmethod
    def from_profile(cls, profile: HardwareProfile) -> DeviceIV:
        """The law of ``profile``'s devices (a linear profile gives the plain resistor)."""
        if profile.transfer_curve == "linear":
            return cls()
        return cls(profile.transfer_curve, profile.transfer_nonlinearity, profile.v_read_volts)

    @property
    def is_linear(self) -> bool:
        return self.curve == "linear"

    def netlist_line(self, name: str, node_a: str, node_b: str, g_siemens: float, k: float) -> str:
        """Element ``name`` from ``node_a`` to ``node_b`` (current flows a -> b for
        ``V_a > V_b``) for conductance ``g_siemens`` in a netlist whose impedances are ``k``
        times the physical ones: a resistor ``k / G`` ohms, or a B-source of current
        ``I / k`` amperes (which keeps every node voltage of the scaled netlist physical)."""
        if self.is_linear:
            return f"r{name} {node_a} {node_b} {_fmt(k / g_siemens)}"
        a = self.nonlinearity
        amplitude = g_siemens * self.v_ref_volts / (k * _DENOMINATOR[self.curve](a))
        slope = a / self.v_ref_volts
        return (
            f"b{name} {node_a} {node_b} i = {_fmt(amplitude)} * "
            f"{self.curve}({_fmt(slope)} * (v({node_a}) - v({node_b})))"
        )


def _fmt(value: float) -> str:
    """A float as SPICE text: read back as the same double in an element value or a table,
    to 11 significant digits in a behavioural expression (ngspice-39)."""
    return f"{value:.17g}"
