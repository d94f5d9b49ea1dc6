"""The neuron circuit after a crossbar column: one MOS transistor read in current mode (EKV).

A column's output ``h`` (network units) sets the gate voltage of a transistor biased around
its threshold, ``V_G - V_T = h · V_ov / r`` (``r`` = ``input_range``: ``h = ±r`` is a gate
overdrive of ``±V_ov`` volts), and the transistor's drain current is the neuron's output.
In saturation the EKV model (Enz, Krummenacher & Vittoz 1995; Enz & Vittoz, *Charge-Based
MOS Transistor Modeling*, Wiley 2006, eq. 3.49) gives one formula from weak to strong
inversion::

    I_D = I_S · ln²(1 + exp((V_G − V_T) / (2 n U_T))),   U_T = k_B T / q

(``I_S = 2 n β U_T²`` the specific current, A; ``n`` the slope factor; ``U_T`` the thermal
voltage, V). Below threshold it is the subthreshold exponential ``I_S e^{(V_G − V_T)/(n U_T)}``,
above it the square law ``(β / 2n)(V_G − V_T)²``: a smooth rectifier, the circuit's ReLU.
The response is normalised so that the full-scale input gives the full-scale output,
``y(h) = r · I_D(h) / I_D(r)`` (network units; ``I_S`` cancels).

This is not the crossbar device's I–V (:func:`~.circuit.transfer_curve`, an odd function of
the read voltage): it is the nonlinearity between two layers, which the crossbar lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BOLTZMANN_J_PER_K = 1.380649e-23  # exact, SI 2019
ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact, SI 2019


@dataclass(frozen=True)
class MOSNeuron:
    """A transistor neuron (module docstring), with bulk-CMOS defaults.

    ``slope_factor`` ``n`` (dimensionless, 1.2–1.5 in bulk CMOS; Enz & Vittoz 2006 ch. 3),
    ``temperature_kelvin`` ``T`` (K), ``overdrive_volts`` ``V_ov`` (V, gate overdrive at
    full-scale input; ±100 mV spans weak to moderate inversion) and ``input_range`` ``r``
    (network units mapped onto ``±V_ov``).
    """

    slope_factor: float = 1.3
    temperature_kelvin: float = 300.0
    overdrive_volts: float = 0.1
    input_range: float = 1.0

    def __post_init__(self) -> None:
        limits = {
            "slope_factor": (1.0, 3.0),
            "temperature_kelvin": (1.0, 500.0),
            "overdrive_volts": (1e-3, 2.0),
            "input_range": (1e-6, 1e6),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and low <= value <= high
            ):
                raise ValueError(f"MOSNeuron: {name}={value!r} must be a number in [{low}, {high}]")

    @property
    def thermal_voltage(self) -> float:
        """``U_T = k_B T / q`` in volts (25.85 mV at 300 K)."""
        return BOLTZMANN_J_PER_K * self.temperature_kelvin / ELEMENTARY_CHARGE_C

    def drain_current(self, overdrive: torch.Tensor) -> torch.Tensor:
        """``I_D / I_S = ln²(1 + exp(V_ov / (2 n U_T)))`` for gate overdrives ``V_G − V_T`` (V)."""
        u = overdrive / (2.0 * self.slope_factor * self.thermal_voltage)
        return torch.logaddexp(u.new_zeros(()), u).square()

    def response(self, h: torch.Tensor) -> torch.Tensor:
        """``y(h) = r · I_D(h V_ov / r) / I_D(V_ov)``, elementwise (network units)."""
        full_scale = self.drain_current(torch.tensor(self.overdrive_volts, dtype=h.dtype))
        volts_per_unit = self.overdrive_volts / self.input_range
        return self.input_range * self.drain_current(h * volts_per_unit) / full_scale

    def input_samples(self, count: int = 401) -> torch.Tensor:
        """``count`` evenly spaced inputs over ``[−r, r]`` (float64), where a fit is made."""
        if count < 8:
            raise ValueError(f"count={count}: need at least 8 samples to fit 4 parameters")
        r = self.input_range
        return torch.linspace(-r, r, count, dtype=torch.float64)


__all__ = ["BOLTZMANN_J_PER_K", "ELEMENTARY_CHARGE_C", "MOSNeuron"]
