"""The result of an energy estimate: per-layer and total cost, baselines, assumptions.

Everything is per input sample (one inference): energy in joules, latency in seconds, area
in mm². ``ratio(baseline)`` is the baseline's energy over the analog chip's: above 1 the
analog design wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from ..figures import pyplot, save_figure
from ..files import write_atomic
from .layer_cost import AREA_PARTS, ENERGY_PARTS, LayerCost


def _count(value: float) -> str:
    """``201000`` -> ``'201k'``: a count in at most five characters."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _si(value: float, unit: str) -> str:
    """``3.2e-9, 'J'`` -> ``'3.20 nJ'``."""
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m")):
        if abs(value) < factor * 1e3:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


@dataclass
class EnergyReport:
    """Per-sample energy, latency and area of a network on one profile, with baselines."""

    model: str
    profile: str
    input_shape: tuple[int, ...]
    layers: list[LayerCost]
    baselines: list[str]
    assumptions: list[str] = field(default_factory=list)

    # -- totals -------------------------------------------------------------------------

    @property
    def energy_j(self) -> float:
        return sum(layer.total_energy_j for layer in self.layers)

    @property
    def energy_by_part_j(self) -> dict[str, float]:
        return {p: sum(layer.energy_j[p] for layer in self.layers) for p in ENERGY_PARTS}

    @property
    def latency_s(self) -> float:
        return sum(layer.latency_s for layer in self.layers)

    @property
    def area_mm2(self) -> float:
        return sum(layer.total_area_mm2 for layer in self.layers)

    @property
    def area_by_part_mm2(self) -> dict[str, float]:
        return {p: sum(layer.area_mm2[p] for layer in self.layers) for p in AREA_PARTS}

    @property
    def macs(self) -> float:
        return sum(layer.macs for layer in self.layers)

    @property
    def tops_per_watt(self) -> float:
        """Throughput per power counting a MAC as two operations: ``2·MACs / E`` / 1e12."""
        return 2 * self.macs / self.energy_j / 1e12

    def baseline_energy_j(self, name: str) -> float:
        self._check_baseline(name)
        return sum(layer.baselines_j[name] for layer in self.layers)

    def baseline_latency_s(self, name: str) -> float:
        self._check_baseline(name)
        return sum(layer.baselines_s[name] for layer in self.layers)

    def ratio(self, name: str) -> float:
        """Baseline energy / analog energy (> 1: the analog chip uses less energy)."""
        return self.baseline_energy_j(name) / self.energy_j

    def _check_baseline(self, name: str) -> None:
        if name not in self.baselines:
            raise KeyError(f"baseline {name!r} not in this report; it has {self.baselines}")

    # -- output -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON-able record of every layer, the totals and the assumptions."""
        return {
            "model": self.model,
            "profile": self.profile,
            "input_shape": list(self.input_shape),
            "per": "one input sample",
            "units": {"energy": "J", "latency": "s", "area": "mm^2"},
            "total": {
                "macs": self.macs,
                "energy_j": self.energy_j,
                "energy_by_part_j": self.energy_by_part_j,
                "latency_s": self.latency_s,
                "area_mm2": self.area_mm2,
                "area_by_part_mm2": self.area_by_part_mm2,
                "tops_per_watt": self.tops_per_watt,
            },
            "baselines": {
                name: {
                    "energy_j": self.baseline_energy_j(name),
                    "latency_s": self.baseline_latency_s(name),
                    "energy_ratio_vs_analog": self.ratio(name),
                }
                for name in self.baselines
            },
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "calls": layer.calls,
                    "macs": layer.macs,
                    "mvms": layer.mvms,
                    "tiles": layer.tiles,
                    "utilization": layer.utilization,
                    "dac_conversions": layer.dac_conversions,
                    "adc_conversions": layer.adc_conversions,
                    "digital_ops": layer.digital_ops,
                    "energy_j": layer.energy_j,
                    "latency_s": layer.latency_s,
                    "area_mm2": layer.area_mm2,
                    "baselines_j": layer.baselines_j,
                }
                for layer in self.layers
            ],
            "assumptions": self.assumptions,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_atomic(path, text)
        return text

    def markdown(self) -> str:
        """The report as markdown: totals, the digital baselines, one row per layer and the
        assumptions."""
        lines = [
            f"# {self.model} on {self.profile}: energy, latency and area per inference",
            "",
            f"Analog: **{_si(self.energy_j, 'J')}**, {_si(self.latency_s, 's')}, "
            f"{self.area_mm2:.3g} mm², {self.tops_per_watt:.3g} TOPS/W.",
            "",
            "| baseline | energy | latency | × analog energy |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {_si(self.baseline_energy_j(name), 'J')} | "
            f"{_si(self.baseline_latency_s(name), 's')} | {self.ratio(name):.3g} |"
            for name in self.baselines
        ]
        lines += [
            "",
            "| layer | kind | MACs | tiles | energy | latency |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {layer.name} | {layer.kind} | {layer.macs:.3g} | {layer.tiles or ''} | "
            f"{_si(layer.total_energy_j, 'J')} | {_si(layer.latency_s, 's')} |"
            for layer in self.layers
        ]
        lines += ["", "![energy breakdown](energy.png)", "", "Assumptions:", ""]
        lines += [f"- {a}" for a in self.assumptions]
        return "\n".join(lines) + "\n"

    def table(self, title: str | None = None, detailed: bool = True) -> Table:
        """Rich table: one row per costed module, then the total and each baseline.

        ``detailed=False`` leaves out the per-part energy columns (for narrow terminals:
        :meth:`parts_table` gives the total per part instead)."""
        table = Table(title=title or f"{self.model} on {self.profile}, per inference")
        columns = ["layer", "kind", "MACs", "tiles", "ADC conv.", "energy", "latency", "× analog"]
        for column in columns:
            table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
        parts = ENERGY_PARTS if detailed else ()
        for part in parts:
            table.add_column(part, justify="right")
        for layer in self.layers:
            table.add_row(
                layer.name,
                layer.kind,
                _count(layer.macs),
                str(layer.tiles or ""),
                _count(layer.adc_conversions) if layer.adc_conversions else "",
                _si(layer.total_energy_j, "J"),
                _si(layer.latency_s, "s"),
                "",
                *(_si(layer.energy_j[p], "J") for p in parts),
            )
        by_part = self.energy_by_part_j
        table.add_row(
            "[bold]total (analog)",
            f"{self.area_mm2:.3g} mm²",
            _count(self.macs),
            str(sum(layer.tiles for layer in self.layers)),
            _count(sum(layer.adc_conversions for layer in self.layers)),
            f"[bold]{_si(self.energy_j, 'J')}",
            _si(self.latency_s, "s"),
            "1",
            *(_si(by_part[p], "J") for p in parts),
            end_section=True,
        )
        for name in self.baselines:
            table.add_row(
                name,
                "digital",
                _count(self.macs),
                "",
                "",
                _si(self.baseline_energy_j(name), "J"),
                _si(self.baseline_latency_s(name), "s"),
                f"{self.ratio(name):.3g}",
            )
        return table

    def parts_table(self) -> Table:
        """The analog total per energy part (what ``table(detailed=False)`` leaves out)."""
        table = Table(title="analog energy per inference, by part")
        table.add_column("part")
        table.add_column("energy", justify="right")
        table.add_column("share", justify="right")
        for part, value in self.energy_by_part_j.items():
            if value:
                table.add_row(part, _si(value, "J"), f"{100 * value / self.energy_j:.1f} %")
        return table

    def plot(self, path: str | Path, max_layers: int = 24) -> Path:
        """Stacked-bar energy breakdown per layer, and the totals against the baselines."""
        plt = pyplot()

        layers = sorted(self.layers, key=lambda layer: -layer.total_energy_j)[:max_layers]
        layers = [layer for layer in self.layers if layer in layers]  # network order
        fig, (ax_layers, ax_total) = plt.subplots(
            1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]}
        )
        x = range(len(layers))
        bottom = [0.0] * len(layers)
        for part in ENERGY_PARTS:
            values = [layer.energy_j[part] * 1e9 for layer in layers]
            if any(values):
                ax_layers.bar(x, values, bottom=bottom, label=part)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax_layers.set_xticks(list(x), [layer.name for layer in layers], rotation=60, ha="right")
        ax_layers.set_ylabel("energy per inference (nJ)")
        ax_layers.set_xlabel("layer (network order)")
        shown = "" if len(layers) == len(self.layers) else f" ({len(layers)} costliest)"
        ax_layers.set_title(f"{self.model} on {self.profile}: per-layer breakdown{shown}")
        ax_layers.legend(fontsize=8)
        names = ["analog", *self.baselines]
        totals = [self.energy_j, *(self.baseline_energy_j(n) for n in self.baselines)]
        ax_total.bar(names, [t * 1e9 for t in totals], color=["C0", *["C7"] * len(self.baselines)])
        ax_total.set_yscale("log")
        ax_total.set_ylabel("energy per inference (nJ, log)")
        ax_total.set_xlabel("hardware (this chip vs digital)")
        ax_total.set_title("total vs digital baselines")
        ax_total.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        return save_figure(fig, path)
