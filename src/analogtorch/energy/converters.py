"""Energy, area and resolution of the data converters at the crossbar's edges.

ADC energy per conversion (joules), with ``ENOB = bits − adc_enob_loss``:

* Walden:   ``E = FOM_W · 2^ENOB`` — doubles per effective bit;
* Schreier: ``E = 10^((SNDR − FOM_S)/10) / 2``, ``SNDR = 6.02·ENOB + 1.76`` dB — ×4 per bit;
* envelope: ``max(Walden, Schreier)``.

DAC energy ``E = dac_energy_per_level_j · 2^bits``; converter areas ``a · 2^bits`` (m²).
"""

from __future__ import annotations

from ..hardware.energy_constants import EnergyConstants


def converter_bits(bits: int | None, constants: EnergyConstants) -> int:
    """The resolution a converter is costed at: its bits, or the default for ideal ones."""
    return constants.default_converter_bits if bits is None else bits


def adc_enob(bits: int, constants: EnergyConstants) -> float:
    """Effective number of bits of a ``bits``-bit ADC (never below 1)."""
    return max(bits - constants.adc_enob_loss, 1.0)


def adc_energy_j(bits: int, constants: EnergyConstants) -> float:
    """Energy of one ADC conversion at ``bits`` resolution, J."""
    enob = adc_enob(bits, constants)
    walden = constants.adc_walden_fom_j * 2.0**enob
    sndr_db = 6.02 * enob + 1.76
    schreier = 10.0 ** ((sndr_db - constants.adc_schreier_fom_db) / 10.0) / 2.0
    if constants.adc_fom_model == "walden":
        return walden
    if constants.adc_fom_model == "schreier":
        return schreier
    return max(walden, schreier)


def dac_energy_j(bits: int, constants: EnergyConstants) -> float:
    """Energy of one DAC conversion at ``bits`` resolution, J."""
    return constants.dac_energy_per_level_j * 2.0**bits


def adc_area_m2(bits: int, constants: EnergyConstants) -> float:
    """Area of one ADC at ``bits`` resolution, m²."""
    return constants.adc_area_per_level_m2 * 2.0**bits


def dac_area_m2(bits: int, constants: EnergyConstants) -> float:
    """Area of one DAC (word-line driver) at ``bits`` resolution, m²."""
    return constants.dac_area_per_level_m2 * 2.0**bits
