"""Reproduce a published analog design point (TOPS, TOPS/W) from its stated parameters.

One core of ``rows × cols`` weight cells runs one matrix-vector product of ``2·rows·cols``
operations; ``cores`` run in parallel. From the per-MVM energy ``E`` (J) and latency ``t``
(s) of :func:`~analogtorch.energy.estimate`:

``TOPS = cores · 2·rows·cols / t / 1e12``,   ``TOPS/W = 2·rows·cols / E / 1e12``.

The weights are seeded Gaussians (mapped with the profile's per-row scale); the inputs are
either uniform in [−1, 1] (``uniform``) or all at full scale (``full-scale``, the largest
crossbar current). A sensitivity sweep varies the constants the paper does not state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..hardware.profile import HardwareProfile
from .estimate import estimate

INPUT_SCENARIOS = ("uniform", "full-scale")


@dataclass(frozen=True)
class DesignPoint:
    """A published chip: its array, core count, reported figures and our profile of it."""

    name: str
    citation: str
    profile: HardwareProfile
    rows: int
    cols: int
    cores: int
    reported_tops: float
    reported_tops_per_watt: float
    sensitivity: dict[str, list[float]] = field(default_factory=dict)


def gaussian_linear(rows: int, cols: int, seed: int) -> nn.Linear:
    """A bias-free ``rows → cols`` linear layer with seeded N(0, 1) weights."""
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(rows, cols, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(cols, rows, generator=generator))
    return layer


def _inputs(scenario: str, rows: int, seed: int) -> torch.Tensor:
    if scenario == "uniform":
        generator = torch.Generator().manual_seed(seed + 1)
        return torch.rand(256, rows, generator=generator) * 2 - 1
    if scenario == "full-scale":
        return torch.ones(1, rows)
    raise ValueError(f"input scenario {scenario!r}: use one of {INPUT_SCENARIOS}")


def predict(
    point: DesignPoint, profile: HardwareProfile, scenario: str, seed: int
) -> dict[str, Any]:
    """Predicted TOPS, TOPS/W and per-MVM energy breakdown (J) for one input scenario."""
    layer = gaussian_linear(point.rows, point.cols, seed)
    report = estimate(layer, profile, inputs=_inputs(scenario, point.rows, seed), baselines=())
    ops = 2 * point.rows * point.cols
    tops_per_watt = ops / report.energy_j / 1e12
    tops = point.cores * ops / report.latency_s / 1e12
    return {
        "scenario": scenario,
        "energy_per_mvm_j": report.energy_j,
        "energy_by_part_j": report.energy_by_part_j,
        "latency_per_mvm_s": report.latency_s,
        "tops": tops,
        "tops_per_watt": tops_per_watt,
        "tops_ratio": tops / point.reported_tops,
        "tops_per_watt_ratio": tops_per_watt / point.reported_tops_per_watt,
    }


def reproduce(point: DesignPoint, seed: int = 0) -> dict[str, Any]:
    """Predictions for every input scenario and the one-at-a-time sensitivity sweep."""
    rows = [predict(point, point.profile, scenario, seed) for scenario in INPUT_SCENARIOS]
    sweep = []
    for key, values in point.sensitivity.items():
        for value in values:
            profile = with_constant(point.profile, key, value)
            for scenario in INPUT_SCENARIOS:
                result = predict(point, profile, scenario, seed)
                sweep.append({"constant": key, "value": value, **result})
    return {
        "name": point.name,
        "citation": point.citation,
        "reported": {"tops": point.reported_tops, "tops_per_watt": point.reported_tops_per_watt},
        "predicted": rows,
        "sensitivity": sweep,
    }


def with_constant(profile: HardwareProfile, key: str, value: float) -> HardwareProfile:
    """``profile`` with ``key`` (a profile field or ``energy.<constant>``) set to ``value``."""
    if key.startswith("energy."):
        return profile.replace(energy={key.removeprefix("energy."): value})
    return profile.replace(**{key: value})
