"""Area and power of an AIS chip vs connection density and coupling precision.

For ``n_units`` units with a random symmetric coupling mask of density ``ρ`` (fraction of
the ``n(n−1)`` off-diagonal couplings present) and couplings of ``b`` bits drawn uniformly
over the ``b``-bit grid (full-scale ``j_max``), :func:`~analogtorch.energy.dynamics.
estimate_dynamics` gives

* power ``P = V² g_max a Σ ĝ + n · P_unit`` (W) — the couplings' conduction plus the units;
* area ``A = present · S_b · d · cell_F2 · F² + n · A_unit + ADCs`` (mm²), where a coupling
  of ``b`` bits on devices of ``bits_per_device`` levels takes ``S_b = ceil((b − 1) /
  bits_per_device)`` device slices (assumption: 2 bits per device, multi-level PCM/RRAM);
* energy per image ``E = P · T + read-out``.

Dense connectivity grows as ``n²`` and every extra bit beyond a device's levels adds a
slice, which is why a practical AIS needs sparse, low-precision couplings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..energy.dynamics import estimate_dynamics
from ..figures import pyplot, save_figure, suptitle
from ..hardware.profile import HardwareProfile
from ..hardware.quantize import weight_step
from .couplings import connectivity_mask

BITS_PER_DEVICE = 2  # assumption: multi-level devices hold 2 bits each


def random_couplings(n_units: int, density: float, bits: int, seed: int = 0) -> torch.Tensor:
    """Symmetric couplings (n, n) in [−1, 1] on the ``bits``-bit grid, a fraction
    ``density`` of the off-diagonal pairs present (no zero codes among those present)."""
    if not 0 < density <= 1:
        raise ValueError(f"density={density}: must be in (0, 1]")
    gen = torch.Generator().manual_seed(seed)
    degree = max(1, round(density * (n_units - 1)))
    mask = (
        connectivity_mask("dense", n_units)
        if density == 1
        else connectivity_mask("random", n_units, degree=degree, seed=seed)
    )
    top = (1 << (bits - 1)) - 1
    codes = torch.randint(1, top + 1, (n_units, n_units), generator=gen)
    signs = torch.randint(0, 2, (n_units, n_units), generator=gen) * 2 - 1
    values = torch.triu(codes * signs * weight_step(bits), diagonal=1)
    return (values + values.T) * mask


def scaling_sweep(
    n_units: int,
    densities: list[float],
    bits_list: list[int],
    profile: HardwareProfile,
    duration_s: float,
    n_readout: int | None = None,
) -> list[dict[str, Any]]:
    """Power (W), area (mm²) and energy per image (J) for each (density, bits)."""
    rows = []
    for bits in bits_list:
        chip = profile.replace(weight_bits=bits, energy={"bits_per_device": BITS_PER_DEVICE})
        for density in densities:
            couplings = random_couplings(n_units, density, bits)
            report = estimate_dynamics(
                couplings, chip, duration_s, n_units=n_units, n_readout=n_readout
            )
            present = int(torch.count_nonzero(couplings))
            rows.append(
                {
                    "bits": bits,
                    "density": present / (n_units * (n_units - 1)),
                    "couplings": present,
                    "power_w": (report.energy_j - report.energy_by_part_j["adc"]) / duration_s,
                    "area_mm2": report.area_mm2,
                    "coupling_area_mm2": report.area_by_part_mm2["cells"],
                    "coupling_power_w": report.energy_by_part_j["crossbar"] / duration_s,
                    "energy_j": report.energy_j,
                }
            )
    return rows


def plot_scaling(rows: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Area and power vs connection density, one colour per coupling precision (log-log):
    solid lines the coupling array alone, dashed lines the whole chip (units and read-out
    ADCs included)."""
    plt = pyplot()
    fig, (ax_area, ax_power) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, bits in enumerate(sorted({r["bits"] for r in rows})):
        sel = [r for r in rows if r["bits"] == bits]
        density = [r["density"] for r in sel]
        style = {"color": f"C{index}"}
        ax_area.plot(
            density,
            [r["coupling_area_mm2"] for r in sel],
            "o-",
            **style,
            label=f"{bits}-bit couplings",
        )
        ax_area.plot(density, [r["area_mm2"] for r in sel], "--", alpha=0.5, **style)
        ax_power.plot(
            density,
            [1e3 * r["coupling_power_w"] for r in sel],
            "o-",
            **style,
            label=f"{bits}-bit couplings",
        )
        ax_power.plot(density, [1e3 * r["power_w"] for r in sel], "--", alpha=0.5, **style)
    for ax, label in (
        (ax_area, "area (mm²): couplings —, whole chip - -"),
        (ax_power, "power while sampling (mW): couplings —, chip - -"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("connection density (fraction of all pairs)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    ax_area.legend(fontsize=8)
    suptitle(fig, title)
    fig.tight_layout()
    return save_figure(fig, path)
