"""The schemas of the HIL study configs (``experiments/hil/*.yaml``): the HIL study
(:mod:`.study`) and the SPICE network check (:mod:`.spice_check`); every key typed and
range-checked, unknown keys refused, before anything trains or any circuit is simulated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..hardware.errors import validated
from ..hardware.profile import HardwareProfile
from ..hardware.random import Seed, Seeds
from ..study_cells import read_config
from .chip_measurements import MeasurementPlan

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
_Hidden = list[Annotated[int, Field(ge=1, le=100_000)]]


class ChipCalibrationArm(BaseModel):
    """The calibrated-physical-surrogate arm: calibrate a profile on each chip's measurements,
    fine-tune on it, measure again and recalibrate every ``refresh_every`` steps."""

    model_config = _STRICT

    measurements: MeasurementPlan = Field(default_factory=MeasurementPlan)
    refresh_every: int | None = Field(100, ge=1)


class HILStudyConfig(BaseModel):
    """Surrogate-only vs HIL vs I/O-twin (vs calibrated physical surrogate, with
    ``calibrate``) training on VirtualChip instances."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    kind: Literal["hil"] = "hil"
    description: str = ""
    dataset: str = "mnist"
    train_subset: int = Field(30000, ge=1)
    test_subset: int = Field(2000, ge=1)
    hidden: _Hidden = Field([256], min_length=1)
    profile: str = "pcm"
    batch_size: int = Field(128, ge=1, le=1_000_000)
    digital_epochs: int = Field(3, ge=0, le=100_000)
    digital_lr: float = Field(2e-3, gt=0, le=10)
    hwa_epochs: int = Field(1, ge=0, le=100_000)
    hwa_lr: float = Field(3e-4, gt=0, le=10)
    steps: int = Field(300, ge=1, le=10_000_000)
    lr: float = Field(1e-3, gt=0, le=10)
    budget: int | None = Field(None, ge=1)
    recalibrate_every: int = Field(50, ge=1)
    calibration_batches: int = Field(4, ge=1, le=10_000)
    chips: Seeds = [0, 1, 2]
    seeds: Seeds = [0, 1]
    design_seed: Seed = 0
    calibrate: ChipCalibrationArm | None = None


class SpiceCheckConfig(BaseModel):
    """A digits MLP on ngspice vs the hardware model's IR-drop surrogate."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    kind: Literal["spice-check"]
    description: str = ""
    seed: Seed = 0
    hidden: _Hidden = Field([32], min_length=1)
    tile: int = Field(32, ge=1, le=4096)
    epochs: int = Field(300, ge=1, le=100_000)
    wire_resistance_ohm: list[Annotated[float, Field(ge=0, le=1e6)]] = Field(
        [0.0, 2.0, 10.0], min_length=1
    )


def complete_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A HIL config (``kind: hil``, the default, or ``kind: spice-check``) checked against
    its schema, defaults filled in, the surrogate profile resolved, as plain data."""
    if data.get("kind") == "spice-check":
        return validated(SpiceCheckConfig, data, source, "SPICE check config")
    config = validated(HILStudyConfig, data, source, "HIL study config")
    try:
        HardwareProfile.preset(config["profile"])
    except ValueError as err:
        raise ValueError(f"{source}: profile: {err}") from None
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a HIL config (``name`` defaults to the file name)."""
    return read_config(path, complete_config)
