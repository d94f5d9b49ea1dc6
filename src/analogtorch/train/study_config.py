"""The schema of a robustness study config (``experiments/robustness/*.yaml``): every key
typed and range-checked before anything trains, unknown keys refused with the known list.

Errors are one :class:`~analogtorch.hardware.errors.ProfileError` (a ``ValueError``) naming
each bad key, its value and what is allowed, e.g. ``eval.chips=0: Input should be greater
than or equal to 1``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..hardware.errors import validated
from ..hardware.random import Seed, Seeds

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=False)


class EvalConfig(BaseModel):
    """How each trained model is scored on programmed chips."""

    model_config = _STRICT

    chips: int = Field(10, ge=1, le=10_000, description="chips per setting")
    bits: list[Annotated[int, Field(ge=2, le=16)]] = Field(
        [4], min_length=1, description="weight precisions scored"
    )
    noise_scales: list[Annotated[float, Field(ge=0.0, le=100.0)]] = Field(
        [0.0, 0.5, 1.0, 2.0, 3.0], min_length=1, description="multipliers of every noise"
    )
    times: list[Annotated[float, Field(ge=0.0, le=3.2e9)]] = Field(
        [3600.0], min_length=1, description="s after programming (at most ~100 years)"
    )
    calibration_batches: int = Field(8, ge=1, le=10_000)


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
