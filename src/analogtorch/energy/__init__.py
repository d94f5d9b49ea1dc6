"""Energy, latency and area of analog inference, with digital baselines (``at.energy``)."""

from .baselines import DigitalBaseline, baseline_names
from .converters import adc_area_m2, adc_energy_j, dac_area_m2, dac_energy_j
from .dynamics import estimate_dynamics
from .estimate import DEFAULT_BASELINES, estimate
from .layer_cost import LayerCost
from .report import EnergyReport

__all__ = [
    "DEFAULT_BASELINES",
    "DigitalBaseline",
    "EnergyReport",
    "LayerCost",
    "adc_area_m2",
    "adc_energy_j",
    "baseline_names",
    "dac_area_m2",
    "dac_energy_j",
    "estimate",
    "estimate_dynamics",
]
