"""Tables, sample grids and scaling plots of an AIS study (``report.md`` and friends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import write_atomic, write_json
from ..hardware.profile import HardwareProfile
from ..study_cells import mean_std
from .scaling import BITS_PER_DEVICE, plot_scaling, scaling_sweep


def _label(record: dict[str, Any]) -> str:
    return record["model"].get("label", record["model"]["kind"])


def _pm(stats: tuple[float, float], n: int, digits: int = 1) -> str:
    """``mean ± std`` (just the mean for one seed)."""
    mean, std = stats
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: metrics as mean ± std over seeds."""
    rows = []
    for label in dict.fromkeys(_label(r) for r in records):
        runs = [r for r in records if _label(r) == label]
        energy = [r["energy"]["total"]["energy_j"] for r in runs if "energy" in r]
        rows.append(
            {
                "model": label,
                "kind": runs[0]["model"]["kind"],
                "seeds": [r["seed"] for r in runs],
                "parameters": runs[0]["parameters"],
                "fid": mean_std([r["fid"] for r in runs]),
                "kid": mean_std([r["kid_mean"] for r in runs]),
                "precision": mean_std([r["precision"] for r in runs]),
                "recall": mean_std([r["recall"] for r in runs]),
                "energy_j": mean_std(energy) if energy else None,
                "duration_s": runs[0].get("duration_s"),
                "extractor": runs[0]["extractor"],
                "grids": [r["grid"] for r in runs],
            }
        )
    return rows


def write_report(
    config: dict[str, Any],
    records: list[dict[str, Any]],
    out_dir: str | Path,
    reference: dict[str, Any] | None = None,
) -> str:
    """Write ``summary.json``, ``report.md`` and ``scaling.png``; returns the markdown.
    ``reference``: the scores of real training images (:func:`.study.real_data_scores`),
    shown as the table's last row, the floor of the metric."""
    out_dir = Path(out_dir)
    rows = summarise(records)
    write_json(out_dir / "summary.json", rows)
    extractors = sorted({r["extractor"] for r in rows})
    lines = [
        f"# {config['name']}: generative models on {config['dataset']} "
        f"({config['image_size']}×{config['image_size']})",
        "",
        config.get("description", "").strip(),
        "",
        f"Feature extractor: {', '.join(extractors)} (classifier FID: comparable only within "
        "this extractor and resolution, not with Inception-v3 FID of papers). FID: mean ± std "
        "over the model's seeds (the mean alone for one seed); other columns: means.",
        "",
        "| model | seeds | parameters | FID ↓ | KID ↓ | precision | recall | energy / image | "
        "sampling time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        energy = f"{1e9 * r['energy_j'][0]:.2f} nJ" if r["energy_j"] else "—"
        duration = f"{1e9 * r['duration_s']:.1f} ns" if r["duration_s"] else "—"
        lines.append(
            f"| {r['model']} | {len(r['seeds'])} | {r['parameters']:,} | "
            f"{_pm(r['fid'], len(r['seeds']))} | "
            f"{r['kid'][0]:.2f} | {r['precision'][0]:.2f} | {r['recall'][0]:.2f} | {energy} | "
            f"{duration} |"
        )
    if reference is not None:
        lines.append(
            f"| real training images (the metric's floor) | — | — | {reference['fid']:.1f} | "
            f"{reference['kid_mean']:.2f} | {reference['precision']:.2f} | "
            f"{reference['recall']:.2f} | — | — |"
        )
    rbm = next((r for r in rows if r["kind"] == "rbm"), None)
    systems = [r for r in rows if r["kind"] in ("oscillator", "ising")]
    if rbm is not None and systems:
        best = min(systems, key=lambda r: r["fid"][0])
        lines.append("")
        for r in {id(x): x for x in (systems[0], best)}.values():
            ratio = rbm["fid"][0] / r["fid"][0]
            lines.append(f"FID(RBM) / FID({r['model']}) = **{ratio:.2f}**.  ")
    lines += ["", "## Samples", ""]
    lines += [f"**{r['model']}**\n\n![{r['model']}]({r['grids'][0]})\n" for r in rows]
    energy_record = next((rec for rec in records if "energy" in rec), None)
    if energy_record is not None:
        first = next(m for m in config["models"] if m["kind"] in ("oscillator", "ising"))
        n_units = energy_record["energy"]["input_shape"][0]
        n_visible = config["image_size"] ** 2
        sweep = scaling_sweep(
            n_units,
            [0.01, 0.03, 0.1, 0.3, 1.0],
            [3, 4, 6, 8],
            HardwareProfile.from_spec(config["energy_profile"]),
            energy_record["duration_s"],
            n_readout=n_visible,
        )
        write_json(out_dir / "scaling.json", sweep)
        plot_scaling(sweep, out_dir / "scaling.png", f"AIS with {n_units} units")
        parts = energy_record["energy"]["total"]["energy_by_part_j"]
        lines += [
            "## Energy, area and power",
            "",
            f"Energy per image of **{_label(energy_record)}** ({first['kind']}, profile "
            f"{config['energy_profile']}): "
            + ", ".join(f"{k} {1e9 * v:.3g} nJ" for k, v in parts.items() if v)
            + f"; area {energy_record['energy']['total']['area_mm2']:.3g} mm². Digital "
            "chips integrating the same dynamics: "
            + ", ".join(
                f"{name} {1e9 * b['energy_j']:.3g} nJ ({b['energy_ratio_vs_analog']:.0f}× the AIS)"
                for name, b in energy_record["energy"]["baselines"].items()
            )
            + ".",
            "",
            "![area and power vs density and precision](scaling.png)",
            "",
            f"Scaling sweep: {n_units} units, random symmetric masks, couplings on the b-bit "
            f"grid, {BITS_PER_DEVICE} bits per device (bit slices beyond that), same sampling "
            "time. Assumptions of the energy model:",
            "",
        ]
        lines += [f"- {a}" for a in energy_record["energy"]["assumptions"]]
    seconds = sum(r["seconds"] for r in records)
    lines += ["", f"Compute: {seconds / 60:.1f} CPU-minutes over {len(records)} runs."]
    markdown = "\n".join(lines) + "\n"
    write_atomic(out_dir / "report.md", markdown)
    return markdown
