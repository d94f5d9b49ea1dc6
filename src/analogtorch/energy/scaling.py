"""Scaling studies: energy and area per operation vs converter bits, array size, density.

Each sweep costs one fixed workload while one design knob moves, everything else as in the
profile; rows give energy per MAC (J), area per weight (m²) and the energy breakdown.

* ``adc_bits``: a ``size × size`` layer with ADC resolution 2…12 bits;
* ``weight_bits``: the same layer with 2…8-bit weights stored in ``bits_per_device``-bit
  devices (bit slicing: more columns and conversions per weight);
* ``array_size``: a fixed ``size × size`` layer on square tiles of 32…1024 cells;
* ``density``: continuous-time dynamics of ``units`` coupled units whose coupling matrix
  keeps a fraction 0.01…1 of its entries (sparse vs dense connectivity); these rows give
  the whole system's energy per run and area (``*_per_mac`` / ``*_per_weight`` = totals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..figures import pyplot, save_figure, suptitle
from ..hardware.profile import HardwareProfile
from .design_point import gaussian_linear
from .dynamics import estimate_dynamics
from .estimate import estimate


def _row(knob: str, value: float, report: Any, macs: float, weights: float) -> dict[str, Any]:
    return {
        "knob": knob,
        "value": value,
        "energy_per_mac_j": report.energy_j / macs,
        "area_per_weight_m2": report.area_mm2 * 1e-6 / weights,
        "tops_per_watt": 2 * macs / report.energy_j / 1e12,
        **{f"energy_{part}_j": v / macs for part, v in report.energy_by_part_j.items()},
    }


def sweep(
    profile: HardwareProfile,
    *,
    size: int = 512,
    units: int = 1024,
    settling_s: float = 1e-6,
    bits_per_device: int = 2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """All four sweeps as flat rows (see the module docstring)."""
    layer = gaussian_linear(size, size, seed)
    macs = float(size * size)
    rows = []
    for bits in range(2, 13):
        report = estimate(layer, profile.replace(adc_bits=bits), (size,), baselines=())
        rows.append(_row("adc_bits", bits, report, macs, macs))
    sliced = profile.replace(energy={"bits_per_device": bits_per_device})
    for bits in range(2, 9):
        report = estimate(layer, sliced.replace(weight_bits=bits), (size,), baselines=())
        rows.append(_row("weight_bits", bits, report, macs, macs))
    for tile in (32, 64, 128, 256, 512, 1024):
        changed = profile.replace(tile_rows=tile, tile_cols=tile)
        report = estimate(layer, changed, (size,), baselines=())
        rows.append(_row("array_size", tile, report, macs, macs))
    generator = torch.Generator().manual_seed(seed)
    couplings = torch.randn(units, units, generator=generator)
    keep = torch.rand(units, units, generator=generator)
    for density in (0.01, 0.03, 0.1, 0.3, 1.0):
        sparse = couplings * (keep < density)
        report = estimate_dynamics(sparse, profile, settling_s, baselines=())
        rows.append(_row("density", density, report, 1.0, 1.0))  # whole system per run
    return rows


def plot_sweep(rows: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """2×2 panels: energy per MAC (pJ) and area per weight (µm²) against each knob."""
    plt = pyplot()

    labels = {
        "adc_bits": "ADC resolution (bits)",
        "weight_bits": "weight resolution (bits, bit-sliced devices)",
        "array_size": "tile size (rows = columns, cells)",
        "density": "coupling density (fraction present)",
    }
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (knob, label) in zip(axes.flat, labels.items(), strict=True):
        selected = [r for r in rows if r["knob"] == knob]
        x = [r["value"] for r in selected]
        whole = knob == "density"
        ax.plot(x, [r["energy_per_mac_j"] * 1e12 for r in selected], "o-")
        ax.set_xlabel(label)
        ax.set_ylabel("energy per run (pJ)" if whole else "energy per MAC (pJ)")
        ax.set_yscale("log")
        twin = ax.twinx()
        area = [r["area_per_weight_m2"] * 1e12 for r in selected]
        twin.plot(x, area, "s--", color="C1")
        twin.set_ylabel("area (µm²)" if whole else "area per weight (µm²)", color="C1")
        twin.set_yscale("log")
        if knob in ("array_size", "density"):
            ax.set_xscale("log")
    suptitle(fig, title)
    fig.tight_layout()
    return save_figure(fig, path)
