"""`HardwareProfile`: the validated description of one analog in-memory-computing design.

Every non-ideality the toolkit models is a field here, in SI units or as a documented
dimensionless fraction. Conductances are normalised by ``g_max_siemens`` inside the
surrogate, so noise standard deviations are fractions of the full-scale conductance of one
weight (both devices of a differential pair together), and currents are in units of
``g_max * v_read`` (the current of one fully-on device at full input).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from ..config_files import load_yaml_mapping
from ..packaged import packaged_names, read_packaged
from .energy_constants import EnergyConstants
from .errors import ProfileError, explain

Bits = int | None
TransferCurve = Literal["linear", "sinh", "tanh"]
WeightNoiseDraw = Literal["per-sample", "per-batch"]
WeightRounding = Literal["nearest", "stochastic"]
WeightQuant = Literal["symmetric", "affine"]

# Fields added after profile fingerprints were first stored (in checkpoints and run folders):
# serialised, and so hashed, only when set away from their default, which leaves every
# profile that does not use them with its old serialisation and fingerprint.
_SERIALISED_WHEN_SET = ("weight_rounding", "weight_quant")

_BITS = {"ge": 1, "le": 16}
_FRACTION = {"ge": 0.0, "le": 1.0}


class HardwareProfile(BaseModel):
    """Validated, immutable hardware description (pydantic v2, frozen, unknown keys rejected).

    Build one with ``HardwareProfile.preset(name)``, ``HardwareProfile.from_yaml(path)`` or
    the constructor, and derive variants with ``profile.replace(**changes)``. Any invalid
    value raises :class:`ProfileError` naming the field, the value and the allowed range.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    name: str = "custom"
    description: str = ""

    # Weights: W -> differential conductances (G+, G-) with G+ - G- = g_max * W / w_scale.
    weight_bits: Bits = Field(None, ge=2, le=16, description="bits of one weight, None = analog")
    weight_range: float | None = Field(
        None,
        gt=0,
        le=1e6,
        description="fixed weight clip |W| <= range; None = per-output-row max |W|",
    )
    weight_quant: WeightQuant = Field(
        "symmetric",
        description=(
            "grid of a quantised weight row (with weight_bits): 'symmetric', 2**(b-1) - 1 "
            "codes each side of 0 over [-max|W|, max|W|] (a differential pair, G+ - G-); "
            "'affine', 2**b codes over [min(W, 0), max(W, 0)] with an integer zero point "
            "(one device per weight and an offset column)"
        ),
    )
    weight_rounding: WeightRounding = Field(
        "nearest",
        description=(
            "rounding of weights to the grid in a layer's training forward: 'nearest', or "
            "'stochastic' (unbiased, E[q(w)] = w, one draw per forward); evaluation, chips "
            "and exported weights always round to nearest"
        ),
    )
    g_max_siemens: float = Field(25e-6, gt=0, le=1.0, description="full-scale conductance, S")

    # Input DAC and output ADC. Ranges: DAC in units of the layer input (learned per layer,
    # initialised from the first batch); ADC in units of g_max * v_read.
    dac_bits: Bits = Field(None, **_BITS)
    adc_bits: Bits = Field(None, **_BITS)
    adc_range: float = Field(
        16.0, gt=0, le=1e6, description="ADC full scale, units of g_max*v_read"
    )
    learn_ranges: bool = Field(True, description="train the DAC/ADC ranges (PACT-style)")
    v_read_volts: float = Field(0.2, gt=0, le=10.0, description="read voltage at full input, V")
    t_read_seconds: float = Field(100e-9, gt=0, le=1.0, description="duration of one MVM read, s")

    # Noise, all as standard deviations in fractions of g_max (one weight).
    prog_noise_std: float = Field(0.0, ge=0, le=1.0, description="programming noise, constant")
    prog_noise_poly: tuple[float, ...] = Field(
        (),
        max_length=8,
        description="programming noise std = sum_k c_k (G/g_max)^k, fractions of g_max, "
        "non-negative on [0, 1]",
    )
    read_noise_std: float = Field(0.0, ge=0, le=1.0, description="read noise at t = 0 s")
    read_noise_log_growth: float = Field(
        0.0, ge=0, le=100.0, description="sigma_r^2(t) = sigma_r^2 (1 + gamma ln(1 + t/t0)); gamma"
    )
    noise_mean_log_slope: float = Field(
        0.0, ge=-1.0, le=1.0, description="mu(t) = slope * ln(1 + t/t0), relative shift of G"
    )
    output_noise_std: float = Field(
        0.0, ge=0, le=1e3, description="additive ADC-input noise, g_max*v"
    )
    shot_noise_coeff: float = Field(
        0.0, ge=0, le=1e3, description="var += coeff * sum |G V|, g_max*v"
    )
    mismatch_std: float = Field(0.0, ge=0, le=1.0, description="multiplicative device gain std")
    training_weight_noise: WeightNoiseDraw = Field(
        "per-sample",
        description=(
            "how training draws programming noise and mismatch: 'per-sample' (independent "
            "for every sample, exact in output space) or 'per-batch' (one weight draw per "
            "forward shared by the batch, like one programmed chip; faster)"
        ),
    )
    weight_clip_sigma: float | None = Field(
        None,
        gt=0,
        le=100.0,
        description=(
            "clip every output row of the digital weights to +-k standard deviations of the "
            "row after each optimiser step (at the next training forward), so the row's "
            "full scale is not set by outliers and the noise, a fraction of full scale, is "
            "smaller against the typical weight; None = no clipping"
        ),
    )
    stuck_rate: float = Field(0.0, **_FRACTION, description="fraction of stuck devices")
    stuck_on_fraction: float = Field(0.5, **_FRACTION, description="of stuck: stuck at g_max")

    # Conductance drift G(t) = G0 (t / t0)^(-nu), nu ~ N(drift_nu_mean, drift_nu_std), >= 0.
    drift_nu_mean: float = Field(0.0, ge=0, le=1.0)
    drift_nu_std: float = Field(0.0, ge=0, le=1.0)
    drift_t0_seconds: float = Field(
        20.0, gt=0, le=3.2e9, description="reference time after programming"
    )
    drift_compensation: bool = Field(False, description="global per-layer output rescaling")

    # Crossbar circuit effects.
    wire_resistance_ohm: float = Field(0.0, ge=0, le=1e4, description="per wire segment, ohm")
    crosstalk: float = Field(0.0, ge=0, le=0.5, description="coupling to adjacent word lines")
    transfer_curve: TransferCurve = "linear"
    transfer_nonlinearity: float = Field(0.0, ge=0, le=10.0, description="alpha of sinh/tanh")
    tile_rows: int = Field(512, ge=1, le=1 << 20, description="word lines per tile (inputs)")
    tile_cols: int = Field(512, ge=1, le=1 << 20, description="bit lines per tile (outputs)")
    node_capacitance_farads: float = Field(
        1e-12,
        gt=0,
        le=1e-6,
        description="integrating node capacitance of a continuous-time core, F; tau = C/g_max",
    )

    # Energy, latency and area constants (see analogtorch.energy).
    energy: EnergyConstants = Field(default_factory=EnergyConstants)

    @model_validator(mode="after")
    def _check_consistency(self) -> HardwareProfile:
        if self.transfer_curve != "linear" and self.transfer_nonlinearity == 0.0:
            raise ValueError(
                f"transfer_nonlinearity=0 with transfer_curve={self.transfer_curve!r}: give a "
                "positive nonlinearity or use transfer_curve='linear'"
            )
        low = _minimum_on_unit_interval(self.prog_noise_poly)
        if low < -1e-12:  # rounding of an exact touch of zero is fine (clipped at 0)
            raise ValueError(
                f"prog_noise_poly={list(self.prog_noise_poly)} is negative on [0, 1] (minimum "
                f"{low:.3g}): a programming-noise std must be >= 0 at every conductance"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields of ``_SERIALISED_WHEN_SET`` only where they differ from their default
        (see :attr:`fingerprint`); reading the shorter form back gives the defaults."""
        data = handler(self)
        for name in _SERIALISED_WHEN_SET:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise explain(err, "HardwareProfile", type(self)) from None

    # -- construction -------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> HardwareProfile:
        """Load a shipped preset by name (see :func:`preset_names`)."""
        try:
            data = read_packaged(__package__, "presets", name, "preset")
        except ValueError as err:
            raise ProfileError(str(err)) from None
        return cls._from_mapping(data, source=f"preset {name!r}")

    @classmethod
    def from_spec(cls, spec: str | Path) -> HardwareProfile:
        """A preset name, or the path of a YAML profile (a ``.yaml``/``.yml`` name or an
        existing file)."""
        path = Path(spec)
        if str(spec).endswith((".yaml", ".yml")) or path.exists():
            if not path.is_file():
                raise FileNotFoundError(f"profile file {str(spec)!r} does not exist")
            return cls.from_yaml(path)
        return cls.preset(str(spec))

    @classmethod
    def from_yaml(cls, path: str | Path) -> HardwareProfile:
        """Read a profile from YAML (safe loader: no Python tags); unknown keys are errors."""
        try:
            data = load_yaml_mapping(path, "hardware profile")
        except ValueError as err:
            raise ProfileError(str(err)) from None
        return cls._from_mapping(data, source=str(path))

    @classmethod
    def _from_mapping(cls, data: Any, source: str) -> HardwareProfile:
        if not isinstance(data, dict):
            raise ProfileError(f"{source}: expected a mapping of profile fields, got {data!r}")
        try:
            return cls(**data)
        except ProfileError as err:
            raise ProfileError(f"{source}: {err}") from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML text; also write it to ``path`` when given."""
        data = self.model_dump(mode="json")
        text = yaml.safe_dump(data, sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def replace(self, **changes: Any) -> HardwareProfile:
        """A validated copy with some fields changed (unknown names are errors).

        ``energy`` may be an :class:`EnergyConstants` or a dict of the constants to change.
        """
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ProfileError(
                f"unknown profile field(s) {unknown}; known fields: "
                f"{', '.join(type(self).model_fields)}"
            )
        if isinstance(changes.get("energy"), dict):  # partial update of the nested constants
            changes["energy"] = {**self.energy.model_dump(), **changes["energy"]}
        return type(self)(**{**self.model_dump(), **changes})

    def scale_noise(self, factor: float) -> HardwareProfile:
        """Copy with every stochastic noise amplitude multiplied by ``factor`` (>= 0)."""
        if factor < 0:
            raise ProfileError(f"noise scale factor={factor} must be >= 0")
        return self.replace(
            prog_noise_std=self.prog_noise_std * factor,
            prog_noise_poly=tuple(c * factor for c in self.prog_noise_poly),
            read_noise_std=self.read_noise_std * factor,
            output_noise_std=self.output_noise_std * factor,
            shot_noise_coeff=self.shot_noise_coeff * factor**2,
        )

    # -- derived properties -------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the profile's JSON: equal iff every field is equal.

        Fields added after fingerprints were first stored (``weight_quant``,
        ``weight_rounding``) enter the JSON, and so the hash, only when set away from their
        default: a profile that leaves them at their defaults keeps the fingerprint it had
        before they existed (checkpoints and run folders store it). A new field must join
        that list, ``_SERIALISED_WHEN_SET``, or it changes every stored fingerprint.
        """
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @property
    def has_weight_noise(self) -> bool:
        return self.prog_noise_std > 0 or any(c != 0 for c in self.prog_noise_poly)

    @property
    def has_noise(self) -> bool:
        return (
            self.has_weight_noise
            or self.read_noise_std > 0
            or self.output_noise_std > 0
            or self.shot_noise_coeff > 0
        )

    @property
    def is_ideal(self) -> bool:
        """True when the analog layer computes exactly the digital layer (fast path)."""
        return (
            not self.has_noise
            and self.weight_bits is None
            and self.dac_bits is None
            and self.adc_bits is None
            and self.weight_range is None
            and self.wire_resistance_ohm == 0
            and self.crosstalk == 0
            and self.transfer_curve == "linear"
        )


def _minimum_on_unit_interval(coeffs: tuple[float, ...]) -> float:
    """``min_{g in [0, 1]} sum_k c_k g^k``: the ends and the real critical points inside."""
    if not coeffs:
        return 0.0
    poly = np.polynomial.Polynomial(coeffs)
    points = [0.0, 1.0] + [
        float(r.real) for r in poly.deriv().roots() if abs(r.imag) < 1e-12 and 0 < r.real < 1
    ]
    return float(min(poly(points)))


def preset_names() -> list[str]:
    """Names of the YAML presets shipped inside the package."""
    return packaged_names(__package__, "presets")
