"""Per-operation energy, time and area constants of an analog in-memory-computing design.

A :class:`HardwareProfile` carries one :class:`EnergyConstants` under ``profile.energy``;
``analogtorch.energy`` turns them into per-layer joules, seconds and mm². All values are SI
(joules, seconds, square metres, watts) except where a name says otherwise (``_f2``: units of
the squared feature size F², ``_db``: decibels). The laws the constants enter:

* ADC energy per conversion, Walden: ``E = FOM_W · 2^ENOB``; Schreier (thermal-noise
  limited): ``E = P / f_s = 10^((SNDR − FOM_S) / 10) / 2`` with ``SNDR = 6.02 ENOB + 1.76``
  dB; ``envelope`` takes the larger of the two (Murmann's ADC survey shows designs follow
  Walden at low and Schreier at high resolution); ``ENOB = adc_bits − adc_enob_loss``.
* DAC energy per conversion ``E = dac_energy_per_level_j · 2^bits`` (the switched unit
  capacitance of a binary-weighted DAC grows as 2^bits); area likewise.
* Crossbar read energy per device ``E = V² · G · t_read`` (amplitude-coded inputs, V ∝ x)
  or ``V_read² · G · t_read · |x|`` (pulse-width-coded inputs, duration ∝ |x|).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ProfileError, explain

AdcFomModel = Literal["walden", "schreier", "envelope"]
InputEncoding = Literal["amplitude", "pwm"]


class EnergyConstants(BaseModel):
    """Validated, immutable energy/latency/area constants (pydantic v2, frozen, no extras)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    # Converters. Unset (None) converter bits in the profile are costed at this resolution.
    default_converter_bits: int = Field(8, ge=1, le=16, description="bits for ideal converters")
    adc_fom_model: AdcFomModel = "walden"
    adc_walden_fom_j: float = Field(50e-15, gt=0, le=1e-9, description="J per conversion-step")
    adc_schreier_fom_db: float = Field(175.0, ge=120.0, le=200.0, description="Schreier FOM, dB")
    adc_enob_loss: float = Field(0.5, ge=0.0, le=4.0, description="ENOB = adc_bits - loss, bits")
    adc_conversion_s: float = Field(10e-9, ge=0, le=1e-3, description="one conversion, s")
    adc_share: int = Field(1, ge=1, le=4096, description="columns multiplexed onto one ADC")
    adc_area_per_level_m2: float = Field(5e-12, ge=0, le=1e-6, description="ADC area / 2^bits, m^2")
    dac_energy_per_level_j: float = Field(
        1e-15, ge=0, le=1e-9, description="DAC energy / 2^bits, J"
    )
    dac_area_per_level_m2: float = Field(
        0.5e-12, ge=0, le=1e-6, description="DAC area / 2^bits, m^2"
    )
    input_encoding: InputEncoding = "amplitude"

    # Crossbar.
    devices_per_weight: int = Field(2, ge=1, le=16, description="devices of one weight cell")
    bits_per_device: int | None = Field(
        None, ge=1, le=16, description="levels of one device; None = any precision in one device"
    )
    cell_area_f2: float = Field(50.0, gt=0, le=1e5, description="one device cell, F^2")
    feature_size_m: float = Field(14e-9, gt=0, le=1e-6, description="technology node F, m")
    tile_periphery_area_m2: float = Field(
        0.0, ge=0, le=1e-4, description="drivers/TIAs/control per tile"
    )
    input_activity: float = Field(
        0.25, gt=0, le=1.0, description="E[x^2/r^2] (amplitude) or E[|x|/r] (pwm) without data"
    )

    # Continuous-time analog dynamics (DEQ relaxation, AIS oscillators / Ising units).
    unit_power_w: float = Field(
        10e-6, ge=0, le=1.0, description="static power of one analog unit, W"
    )
    unit_area_m2: float = Field(100e-12, ge=0, le=1e-4, description="area of one analog unit, m^2")

    # Digital periphery and memory.
    digital_op_j: float = Field(
        0.1e-12, ge=0, le=1e-6, description="one 8-16 bit add/scale/activation, J"
    )
    digital_mac_j: float = Field(
        0.25e-12, ge=0, le=1e-6, description="one digital MAC (digital layers)"
    )
    digital_ops_per_s: float = Field(
        256e9, gt=0, le=1e18, description="throughput of the digital unit"
    )
    sram_j_per_byte: float = Field(
        1.25e-12, ge=0, le=1e-6, description="activation buffer access, J/B"
    )
    leakage_w_per_mm2: float = Field(
        0.0, ge=0, le=100.0, description="static power per mm^2 of area, W"
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise explain(err, "EnergyConstants", type(self)) from None

    def replace(self, **changes: Any) -> EnergyConstants:
        """A validated copy with some constants changed (unknown names are errors)."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ProfileError(
                f"unknown energy constant(s) {unknown}; known: {', '.join(type(self).model_fields)}"
            )
        return type(self)(**{**self.model_dump(), **changes})
