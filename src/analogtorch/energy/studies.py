"""Named energy studies from YAML configs (``experiments/energy/*.yaml``).

A config has a ``kind``:

* ``networks``: reference networks (``analogtorch.models``) on a profile against the digital
  baselines, over several weight seeds (mean ± std);
* ``design-point``: a published chip reproduced from its stated parameters;
* ``scaling``: energy/area vs converter bits, weight bits, array size and density.

Each writes ``summary.json`` and ``report.md`` (and PNG plots) into the output folder and
returns the markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config_files import load_yaml_mapping
from ..files import write_atomic, write_json
from ..hardware.profile import HardwareProfile
from ..models import build_model
from ..study_cells import mean_std
from .design_point import DesignPoint, reproduce
from .estimate import DEFAULT_BASELINES, estimate
from .scaling import plot_sweep, sweep

KINDS = ("networks", "design-point", "scaling")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a study config: a mapping with ``name``, ``kind`` and ``profile``."""
    path = Path(path)
    config = load_yaml_mapping(path, "energy study config")
    for key in ("name", "kind", "profile"):
        if key not in config:
            raise ValueError(f"{path}: missing key {key!r} (needs name, kind, profile)")
    if config["kind"] not in KINDS:
        raise ValueError(f"{path}: kind={config['kind']!r}; use one of {KINDS}")
    return config


def config_profile(config: dict[str, Any]) -> HardwareProfile:
    """The config's preset with its ``profile_changes`` applied."""
    return HardwareProfile.preset(config["profile"]).replace(**config.get("profile_changes", {}))


def run_study(config: dict[str, Any], out_dir: Path) -> str:
    """Run one study config, write its JSON/markdown/plots into ``out_dir``, return markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = {"networks": _networks, "design-point": _design_point, "scaling": _scaling}
    record, markdown = runner[config["kind"]](config, config_profile(config), out_dir)
    record = {"config": config, **record}
    write_json(out_dir / "summary.json", record)
    write_atomic(out_dir / "report.md", markdown)
    return markdown


def _fmt(values: list[float], digits: int = 3) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}g} ± {std:.2g}"


def _networks(config: dict, profile: HardwareProfile, out_dir: Path) -> tuple[dict, str]:
    seeds = config.get("seeds", [0, 1, 2])
    baselines = config.get("baselines", list(DEFAULT_BASELINES))
    records: dict[str, list[dict]] = {}
    lines = [
        f"# {config['name']}: analog vs digital energy per inference",
        "",
        f"Profile `{config['profile']}` with {config.get('profile_changes', {})}; "
        f"mean ± std over weight seeds {seeds} (config `{config['name']}`).",
        "",
        "| network | MACs | analog energy | latency | area (mm²) | TOPS/W | "
        + " | ".join(f"{b} energy | {b} / analog" for b in baselines)
        + " |",
        "|---" * (6 + 2 * len(baselines)) + "|",
    ]
    assumptions: list[str] = []
    for name in config["models"]:
        runs = []
        for seed in seeds:
            model, shape = build_model(name, seed=seed)
            report = estimate(model, profile, shape, baselines=baselines, name=name)
            runs.append(report.to_dict())
            if seed == seeds[0]:
                report.plot(out_dir / f"{config['name']}-{name}.png")
                assumptions = report.assumptions
        records[name] = runs
        totals = [r["total"] for r in runs]
        cells = [
            name,
            f"{totals[0]['macs']:.3g}",
            _fmt([t["energy_j"] * 1e9 for t in totals]) + " nJ",
            _fmt([t["latency_s"] * 1e6 for t in totals]) + " µs",
            f"{totals[0]['area_mm2']:.3g}",
            _fmt([t["tops_per_watt"] for t in totals]),
        ]
        for b in baselines:
            cells.append(_fmt([r["baselines"][b]["energy_j"] * 1e9 for r in runs]) + " nJ")
            cells.append(_fmt([r["baselines"][b]["energy_ratio_vs_analog"] for r in runs]) + "×")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Assumptions:", "", *(f"- {a}" for a in assumptions), ""]
    lines += [f"![{name}]({config['name']}-{name}.png)" for name in config["models"]]
    return {"runs": records}, "\n".join(lines) + "\n"


def _design_point(config: dict, profile: HardwareProfile, out_dir: Path) -> tuple[dict, str]:
    point = DesignPoint(
        name=config["name"],
        citation=config["citation"],
        profile=profile,
        rows=config["array"][0],
        cols=config["array"][1],
        cores=config["cores"],
        reported_tops=config["reported"]["tops"],
        reported_tops_per_watt=config["reported"]["tops_per_watt"],
        sensitivity=config.get("sensitivity", {}),
    )
    result = reproduce(point, seed=config.get("seed", 0))
    lines = [
        f"# {point.name}: reproducing a published design point",
        "",
        f"Reported: {point.citation}",
        "",
        "| input scenario | predicted TOPS | reported | ratio | predicted TOPS/W | reported "
        "| ratio | energy per MVM | ADC | crossbar | memory |",
        "|---" * 11 + "|",
    ]
    for row in result["predicted"]:
        parts = row["energy_by_part_j"]
        lines.append(
            f"| {row['scenario']} | {row['tops']:.3g} | {point.reported_tops} | "
            f"{row['tops_ratio']:.2f} | {row['tops_per_watt']:.3g} | "
            f"{point.reported_tops_per_watt} | {row['tops_per_watt_ratio']:.2f} | "
            f"{row['energy_per_mvm_j'] * 1e9:.3g} nJ | {parts['adc'] * 1e9:.3g} nJ | "
            f"{parts['crossbar'] * 1e9:.3g} nJ | {parts['memory'] * 1e9:.3g} nJ |"
        )
    lines += [
        "",
        "Sensitivity to constants the paper does not state (one at a time):",
        "",
        "| constant | value | scenario | TOPS/W | ratio to reported |",
        "|---|---|---|---|---|",
    ]
    for row in result["sensitivity"]:
        lines.append(
            f"| {row['constant']} | {row['value']:g} | {row['scenario']} | "
            f"{row['tops_per_watt']:.3g} | {row['tops_per_watt_ratio']:.2f} |"
        )
    return result, "\n".join(lines) + "\n"


def _scaling(config: dict, profile: HardwareProfile, out_dir: Path) -> tuple[dict, str]:
    rows = sweep(profile, **config.get("options", {}))
    plot_sweep(rows, out_dir / f"{config['name']}.png", f"{config['name']} on {profile.name}")
    lines = [
        f"# {config['name']}: energy and area scaling on `{profile.name}`",
        "",
        f"![scaling]({config['name']}.png)",
        "",
        "| knob | value | energy per MAC (pJ) | area per weight (µm²) | ADC share of energy |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        adc_share = row["energy_adc_j"] / row["energy_per_mac_j"]
        lines.append(
            f"| {row['knob']} | {row['value']:g} | {row['energy_per_mac_j'] * 1e12:.4g} | "
            f"{row['area_per_weight_m2'] * 1e12:.4g} | {adc_share:.0%} |"
        )
    lines.append("")
    lines.append("`density` rows are the whole coupled system (energy per run, total area).")
    return {"rows": rows}, "\n".join(lines) + "\n"
