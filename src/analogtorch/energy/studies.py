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

from ..files import write_atomic, write_json
from ..hardware.profile import HardwareProfile
from ..models import MODELS, build_model
from ..study_cells import mean_std, read_config
from .baselines import baseline_names
from .design_point import DesignPoint, reproduce, with_constant
from .estimate import estimate
from .scaling import plot_sweep, sweep
from .study_config import validate_energy


def complete_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a study config against the schema of its kind (:mod:`.study_config`) and
    resolve the names it uses: the profile and its changes, models, baselines and the
    profile constants of a sensitivity sweep."""
    config = validate_energy(data, source)
    try:
        profile = config_profile(config)
    except ValueError as err:
        raise ValueError(f"{source}: profile {config['profile']!r}: {err}") from None
    for model in config.get("models", []):
        if model not in MODELS:
            raise ValueError(f"{source}: unknown model {model!r}; known: {', '.join(MODELS)}")
    known = baseline_names()
    for baseline in config.get("baselines", []):
        if baseline not in known:
            raise ValueError(f"{source}: unknown baseline {baseline!r}; known: {', '.join(known)}")
    for key, values in config.get("sensitivity", {}).items():
        for value in values:
            try:
                with_constant(profile, key, value)
            except ValueError as err:
                raise ValueError(f"{source}: sensitivity {key}: {err}") from None
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a study config (``name`` defaults to the file name)."""
    return read_config(path, complete_config)


def config_profile(config: dict[str, Any]) -> HardwareProfile:
    """The config's preset with its ``profile_changes`` applied."""
    return HardwareProfile.preset(config["profile"]).replace(**config["profile_changes"])


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
    seeds = config["seeds"]
    baselines = config["baselines"]
    records: dict[str, list[dict]] = {}
    lines = [
        f"# {config['name']}: analog vs digital energy per inference",
        "",
        f"Profile `{config['profile']}` with {config['profile_changes']}; "
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
        sensitivity=config["sensitivity"],
    )
    result = reproduce(point, seed=config["seed"])
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
    rows = sweep(profile, **config["options"])
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
