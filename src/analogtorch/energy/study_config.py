"""The schema of an energy study config (``experiments/energy/*.yaml``): one model per
``kind`` (networks, design-point, scaling), every key typed and range-checked and unknown
keys refused before anything is estimated; names (models, baselines, profile constants)
are resolved by :func:`analogtorch.energy.studies.load_config`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..hardware.errors import ProfileError, validated
from ..hardware.random import Seed, Seeds
from .estimate import DEFAULT_BASELINES

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Study(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    description: str = ""
    profile: str = Field(min_length=1)
    profile_changes: dict[str, Any] = Field(default_factory=dict)


class NetworksStudy(_Study):
    """Analog vs digital energy per inference of registered networks over weight seeds."""

    kind: Literal["networks"]
    models: list[str] = Field(min_length=1)
    seeds: Seeds = [0, 1, 2]
    baselines: list[str] = Field(list(DEFAULT_BASELINES))


class Reported(BaseModel):
    model_config = _STRICT

    tops: float = Field(gt=0, le=1e9)
    tops_per_watt: float = Field(gt=0, le=1e9)


class DesignPointStudy(_Study):
    """A published chip's throughput and efficiency predicted from its stated parameters."""

    kind: Literal["design-point"]
    citation: str = Field(min_length=1)
    array: tuple[Annotated[int, Field(ge=1, le=1 << 20)], Annotated[int, Field(ge=1, le=1 << 20)]]
    cores: int = Field(ge=1, le=1 << 20)
    reported: Reported
    seed: Seed = 0
    sensitivity: dict[str, list[float]] = Field(default_factory=dict)


class ScalingOptions(BaseModel):
    """Arguments of :func:`analogtorch.energy.scaling.sweep`."""

    model_config = _STRICT

    size: int = Field(512, ge=1, le=1 << 16)
    units: int = Field(1024, ge=1, le=1 << 16)
    settling_s: float = Field(1e-6, gt=0, le=1.0)
    bits_per_device: int = Field(2, ge=1, le=16)
    seed: Seed = 0


class ScalingStudy(_Study):
    """Energy/area against ADC bits, weight bits, tile size and coupling density."""

    kind: Literal["scaling"]
    options: ScalingOptions = Field(default_factory=ScalingOptions)


_SCHEMAS: dict[str, type[_Study]] = {
    "networks": NetworksStudy,
    "design-point": DesignPointStudy,
    "scaling": ScalingStudy,
}
KINDS = tuple(_SCHEMAS)


def validate_energy(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` checked against the schema of its ``kind``, defaults filled in, as plain data."""
    kind = data.get("kind")
    if kind not in _SCHEMAS:
        raise ProfileError(f"{source}: kind={kind!r}: an energy study is one of {', '.join(KINDS)}")
    return validated(_SCHEMAS[kind], data, source, f"energy {kind} study config")
