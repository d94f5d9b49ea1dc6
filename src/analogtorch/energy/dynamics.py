"""Energy of continuous-time analog dynamics: power × settling time, plus the read-out.

For an analog relaxation of an equilibrium core (``τ dz/dt = −z + f(z, x)``) or an Analog
Interaction System (coupled oscillators / Ising units), the crossbar of couplings and the
units are powered for the whole integration time ``T`` instead of being read once:

``P = V_read² · g_max · Σ_j a_j Σ_i ĝ_ij  +  n_units · unit_power_w``            (watts)

``E = P · T + n_readout · E_ADC(adc_bits) + leakage_w_per_mm2 · A · T``          (joules)

``A = couplings · S · devices_per_weight · cell_f2 · F² + n_units · unit_area + n_readout ADCs``

with ``S = ceil((weight_bits − 1) / bits_per_device)`` bit slices per coupling when a device
holds fewer levels than a coupling needs (``layer_cost.weight_slices``), else ``S = 1``.

A zero coupling is an absent device (sparse connectivity costs nothing and takes no area).
The digital equivalent integrates the same dynamics in ``digital_steps`` steps of one
matrix-vector product each.
"""

from __future__ import annotations

import math

import torch

from ..hardware.profile import HardwareProfile
from .baselines import DigitalBaseline
from .converters import adc_area_m2, adc_energy_j, converter_bits
from .estimate import DEFAULT_BASELINES
from .layer_cost import LayerCost, cell_conductance, weight_slices
from .report import EnergyReport


def estimate_dynamics(
    couplings: torch.Tensor,
    profile: HardwareProfile,
    duration_s: float,
    *,
    n_units: int | None = None,
    n_readout: int | None = None,
    activity: float | None = None,
    digital_steps: int = 1,
    baselines: tuple[str, ...] = DEFAULT_BASELINES,
    name: str = "dynamics",
) -> EnergyReport:
    """Energy, area and time of running coupled analog dynamics for ``duration_s`` seconds.

    Args:
        couplings: (units_out, units_in) coupling matrix; zeros are absent devices.
        profile: hardware profile (conductance scale, read voltage, energy constants).
        duration_s: integration / settling time in seconds (> 0).
        n_units: analog units (integrators, oscillators); default ``couplings.shape[0]``.
        n_readout: units digitised at the end (default all ``n_units``).
        activity: ``E[(x/r)²]`` of the units' signals; default ``energy.input_activity``.
        digital_steps: solver steps (one MVM each) a digital chip needs for the same result.
    """
    if couplings.ndim != 2:
        raise ValueError(f"couplings must be a 2-D matrix, got shape {tuple(couplings.shape)}")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s={duration_s}: must be a positive number of seconds")
    if digital_steps < 1:
        raise ValueError(f"digital_steps={digital_steps}: must be >= 1")
    c = profile.energy
    n_units = couplings.shape[0] if n_units is None else int(n_units)
    n_readout = n_units if n_readout is None else int(n_readout)
    activity = c.input_activity if activity is None else float(activity)
    if not 0 <= activity <= 1:
        raise ValueError(f"activity={activity}: must be in [0, 1]")
    present = int(torch.count_nonzero(couplings))
    g_sum = float(cell_conductance(couplings, profile).sum())
    adc_bits = converter_bits(profile.adc_bits, c)

    cost = LayerCost(name, "dynamics", 1.0, float(present * digital_steps))
    cost.adc_conversions = float(n_readout)
    power_w = profile.v_read_volts**2 * profile.g_max_siemens * activity * g_sum
    cost.energy_j["crossbar"] = power_w * duration_s
    cost.energy_j["units"] = n_units * c.unit_power_w * duration_s
    cost.energy_j["adc"] = n_readout * adc_energy_j(adc_bits, c)
    cost.latency_s = duration_s + c.adc_share * c.adc_conversion_s
    slices = weight_slices(profile)
    cells_m2 = present * slices * c.devices_per_weight * c.cell_area_f2 * c.feature_size_m**2
    cost.area_mm2["cells"] = 1e6 * cells_m2
    cost.area_mm2["units"] = 1e6 * n_units * c.unit_area_m2
    cost.area_mm2["adc"] = 1e6 * math.ceil(n_readout / c.adc_share) * adc_area_m2(adc_bits, c)
    cost.energy_j["leakage"] = c.leakage_w_per_mm2 * cost.total_area_mm2 * cost.latency_s
    for baseline in (DigitalBaseline.preset(b) for b in baselines):
        parts = baseline.layer_energy_j(
            cost.macs, present, digital_steps, 2.0 * n_units * digital_steps, 0.0, present
        )
        cost.baselines_j[baseline.name] = sum(parts.values())
        cost.baselines_s[baseline.name] = baseline.layer_latency_s(cost.macs, digital_steps)
    assumptions = [
        f"continuous-time dynamics powered for {duration_s:.3g} s; unit signals at activity "
        f"{activity:g} of full scale; {present} of {couplings.numel()} couplings present",
        f"analog unit bias power {c.unit_power_w:.3g} W each ({n_units} units); "
        f"{n_readout} units read out by {adc_bits}-bit ADCs at the end",
        f"digital equivalent: {digital_steps} solver steps of one sparse MVM each",
    ]
    return EnergyReport(
        model=name,
        profile=profile.name,
        input_shape=(couplings.shape[1],),
        layers=[cost],
        baselines=list(baselines),
        assumptions=assumptions,
    )
