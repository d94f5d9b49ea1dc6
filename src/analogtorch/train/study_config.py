"""The schema of a robustness study config (``experiments/robustness/*.yaml``): every key
typed and range-checked before anything trains, unknown keys refused with the known list.

Errors are one :class:`~analogtorch.hardware.errors.ProfileError` (a ``ValueError``) naming
each bad key, its value and what is allowed, e.g. ``eval.chips=0: Input should be greater
than or equal to 1``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..hardware.errors import validated
from ..hardware.random import Seed, Seeds

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=False)


class EvalConfig(BaseModel):
    """How each trained model is scored on programmed chips."""

    model_config = _STRICT

    chips: int = Field(10, ge=1, le=10_000, description="chips per setting")
    bits: list[int] = Field([4], min_length=1, description="weight precisions scored")
    noise_scales: list[float] = Field(
        [0.0, 0.5, 1.0, 2.0, 3.0], min_length=1, description="multipliers of every noise"
    )
    times: list[float] = Field([3600.0], min_length=1, description="s after programming")
    calibration_batches: int = Field(8, ge=1, le=10_000)

    @field_validator("bits")
    @classmethod
    def _bits(cls, value: list[int]) -> list[int]:
        bad = [b for b in value if not 2 <= b <= 16]
        if bad:
            raise ValueError(f"weight bits {bad} outside [2, 16]")
        return value

    @field_validator("noise_scales")
    @classmethod
    def _scales(cls, value: list[float]) -> list[float]:
        bad = [s for s in value if not 0.0 <= s <= 100.0]
        if bad:
            raise ValueError(f"noise scales {bad} outside [0, 100]")
        return value

    @field_validator("times")
    @classmethod
    def _times(cls, value: list[float]) -> list[float]:
        bad = [t for t in value if not 0.0 <= t <= 3.2e9]
        if bad:
            raise ValueError(f"times {bad} outside [0, 3.2e9] s")
        return value


class RobustnessConfig(BaseModel):
    """A robustness study: methods x seeds, each scored on ``eval``'s chips."""

    model_config = _STRICT

    kind: str = Field("robustness", pattern="^robustness$")
    name: str = Field(min_length=1)
    description: str = ""
    dataset: str = "mnist"
    model: str = "mnist-mlp"
    n_train: int | None = Field(None, ge=1)
    n_test: int | None = Field(None, ge=1)
    profile: str = "seed-4bit-10pct"
    profile_changes: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    methods: list[str | dict[str, Any]] = Field(["fp32", "physics-informed"], min_length=1)
    seeds: Seeds = [0, 1, 2]
    eval: EvalConfig = Field(default_factory=EvalConfig)
    chip_seed: Seed = 10_000


def validate_robustness(data: Any, source: str) -> dict[str, Any]:
    """``data`` checked against :class:`RobustnessConfig`, defaults filled in, as plain data."""
    return validated(RobustnessConfig, data, source, "robustness study config")
