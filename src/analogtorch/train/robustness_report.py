"""Tables and plots of a robustness study: accuracy over chips × seeds per method.

Each (method, bits, noise scale, time) pools the ``chips`` accuracies of every seed; the
reported spread is the pooled sample standard deviation of all chip × seed accuracies,
from the per-seed means ``m_i`` and standard deviations ``s_i`` over ``n`` chips each:

``s² = [Σ_i (n − 1) s_i² + n Σ_i (m_i − m̄)²] / (k n − 1)``  (``k`` seeds).

The "drop" is the FP32 reference's digital test accuracy (mean over seeds; the reference
is trained for the same total epochs on the same data as every method) minus the method's
mean accuracy on chips, in percentage points.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..figures import pyplot, save_figure, suptitle
from ..files import write_atomic, write_json
from ..study_cells import mean_std, study_profile

ABLATION_BASES = ("plain", "full")


def pooled(means: list[float], stds: list[float], n: int) -> tuple[float, float]:
    """Mean and pooled sample std of ``k`` groups of ``n`` values (module docstring)."""
    k = len(means)
    grand = sum(means) / k
    if k * n < 2:
        return grand, 0.0
    within = sum((n - 1) * s**2 for s in stds)
    between = n * sum((m - grand) ** 2 for m in means)
    return grand, math.sqrt((within + between) / (k * n - 1))


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (method, setting, bits, noise scale, time), seeds pooled."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    order: list[str] = []
    for record in records:
        label = record["method"]["label"]
        if label not in order:
            order.append(label)
        for row in record["rows"]:
            key = (label, row["setting"], row["bits"], row["noise_scale"], row["time_s"])
            groups[key].append(row)
    summary = []
    for (label, setting, bits, scale, time_s), rows in groups.items():
        mean, std = pooled(
            [r["accuracy_mean"] for r in rows],
            [r["accuracy_std"] for r in rows],
            rows[0]["n_chips"],
        )
        summary.append(
            {
                "method": label,
                "setting": setting,
                "bits": bits,
                "noise_scale": scale,
                "time_s": time_s,
                "accuracy_mean": mean,
                "accuracy_std": std,
                "seeds": len(rows),
                "chips": rows[0]["n_chips"],
            }
        )
    summary.sort(key=lambda r: (order.index(r["method"]), r["setting"] != "ideal", r["bits"]))
    return summary


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def write_report(config: dict[str, Any], records: list[dict[str, Any]], out_dir: str | Path) -> str:
    """Write ``results.csv``, ``summary.json``, ``report.md`` and ``accuracy_vs_noise.png``
    into ``out_dir`` (atomically); returns the markdown."""
    out_dir = Path(out_dir)
    summary = aggregate(records)
    per_seed = {r["seed"]: r["fp32_accuracy"] for r in records}
    fp32_mean, fp32_std = mean_std(list(per_seed.values()))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["method", "seed", "bits", *records[0]["rows"][0]])
    writer.writeheader()
    for record in records:
        for row in record["rows"]:
            writer.writerow({"method": record["method"]["label"], "seed": record["seed"], **row})
    write_atomic(out_dir / "results.csv", table.getvalue())
    js_rows = js_summary(records)
    record = {"fp32_accuracy": [fp32_mean, fp32_std], "rows": summary}
    write_json(
        out_dir / "summary.json", {**record, "js_divergence": js_rows} if js_rows else record
    )
    ev = config["eval"]
    nominal_bits = ev["bits"][0]
    nominal_scale = 1.0 if 1.0 in ev["noise_scales"] else ev["noise_scales"][0]
    nominal_time = ev["times"][0]
    base_noise = 100 * study_profile(config).prog_noise_std
    chips = [r for r in summary if r["setting"] == "chip"]
    # the variant an ablation is read against: "plain" (add one thing) or "full" (remove one)
    base = next((b for b in ABLATION_BASES if any(r["method"] == b for r in chips)), None)
    has_base = base is not None
    if has_base:
        base_acc = _find(chips, base, nominal_bits, nominal_scale, nominal_time)["accuracy_mean"]
    lines = [
        f"# {config['name']}: {config['dataset']} / {config['model']}",
        "",
        config.get("description", "").strip(),
        "",
        f"Digital FP32 test accuracy: **{_pct(fp32_mean, fp32_std)} %** (mean ± std over "
        f"{len(config['seeds'])} seeds). Chips: {ev['chips']} per setting (the same chips for "
        f"every method), seeds {config['seeds']}; spread = pooled std over chips × seeds.",
        "",
        f"## Nominal setting: {nominal_bits}-bit weights, {base_noise * nominal_scale:g} % "
        f"weight noise, t = {nominal_time:g} s",
        "",
        "| method | noise-free (quantised) % | on chips % | drop vs FP32 (points) |"
        + (f" Δ vs {base} (points) |" if has_base else ""),
        "|---|---|---|---|" + ("---|" if has_base else ""),
    ]
    for label in dict.fromkeys(r["method"] for r in summary):
        ideal = next(
            r
            for r in summary
            if r["method"] == label and r["setting"] == "ideal" and r["bits"] == nominal_bits
        )
        chip = _find(chips, label, nominal_bits, nominal_scale, nominal_time)
        lines.append(
            f"| {label} | {_pct(ideal['accuracy_mean'], ideal['accuracy_std'])} | "
            f"{_pct(chip['accuracy_mean'], chip['accuracy_std'])} | "
            f"{100 * (fp32_mean - chip['accuracy_mean']):.2f} |"
            + (f" {100 * (chip['accuracy_mean'] - base_acc):+.2f} |" if has_base else "")
        )
    for bits in ev["bits"]:
        for time_s in ev["times"]:
            lines += [
                "",
                f"## Accuracy (%) vs weight noise: {bits}-bit weights, t = {time_s:g} s",
                "",
            ]
            header = [f"{base_noise * s:g} %" for s in ev["noise_scales"]]
            lines += ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
            for label in dict.fromkeys(r["method"] for r in summary):
                cells = [
                    _pct(c["accuracy_mean"], c["accuracy_std"])
                    for s in ev["noise_scales"]
                    for c in [_find(chips, label, bits, s, time_s)]
                ]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if has_base:
        lines += _paired_vs_base(config, records, base, nominal_bits, nominal_time)
    lines += _js_table(js_rows)
    lines += ["", "![accuracy vs noise](accuracy_vs_noise.png)", ""]
    seconds = sum(r["seconds"] for r in records)
    lines.append(f"Compute: {seconds / 60:.1f} CPU-minutes over {len(records)} cells.")
    markdown = "\n".join(lines) + "\n"
    write_atomic(out_dir / "report.md", markdown)
    _plot(config, chips, base_noise, fp32_mean, out_dir / "accuracy_vs_noise.png")
    return markdown


def _paired_vs_base(
    config: dict[str, Any], records: list[dict[str, Any]], base: str, bits: int, time_s: float
) -> list[str]:
    """Markdown table of each method's accuracy minus that of ``base`` (an ablation's
    reference variant), paired by seed (same FP32 start, same chips): mean ± std over seeds
    of the per-seed chip-mean differences."""

    def per_seed(label: str, scale: float) -> dict[int, float]:
        return {
            r["seed"]: row["accuracy_mean"]
            for r in records
            if r["method"]["label"] == label
            for row in r["rows"]
            if (row["setting"], row["bits"], row["noise_scale"], row["time_s"])
            == ("chip", bits, scale, time_s)
        }

    scales = config["eval"]["noise_scales"]
    noise = 100 * study_profile(config).prog_noise_std
    lines = [
        "",
        f"## Paired difference vs {base} (points; mean ± std over seeds), {bits}-bit, "
        f"t = {time_s:g} s",
        "",
        "| method | " + " | ".join(f"{noise * s:g} %" for s in scales) + " |",
        "|---" * (len(scales) + 1) + "|",
    ]
    labels = dict.fromkeys(r["method"]["label"] for r in records)
    for label in labels:
        if label == base:
            continue
        cells = []
        for scale in scales:
            mine, ref = per_seed(label, scale), per_seed(base, scale)
            mean, std = mean_std([100 * (mine[k] - ref[k]) for k in sorted(ref)])
            cells.append(f"{mean:+.2f} ± {std:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def js_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: the simulator-vs-chip activation JS (nats, :mod:`.activations`) of each
    analog layer and their mean over layers, each as mean and sample std over chips × seeds,
    and the simulator-vs-simulator floor (mean over seeds). Cells computed before the metric
    existed carry none and are left out; so is a method none of whose cells has it."""
    per_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "js_divergence" in record:
            per_method[record["method"]["label"]].append(record["js_divergence"])
    rows = []
    for label, cells in per_method.items():
        names = list(cells[0]["layers"])
        layers = {
            name: mean_std([v for c in cells for v in c["layers"][name]["chips"]]) for name in names
        }
        per_chip_means = [
            sum(values) / len(values)
            for c in cells
            for values in zip(*(c["layers"][n]["chips"] for n in names), strict=True)
        ]
        floors = [sum(c["layers"][n]["floor"] for n in names) / len(names) for c in cells]
        rows.append(
            {
                "method": label,
                "layers": layers,
                "mean_over_layers": mean_std(per_chip_means),
                "floor": sum(floors) / len(floors),
                "seeds": len(cells),
                "chips": len(cells[0]["layers"][names[0]]["chips"]),
                **{k: cells[0][k] for k in ("bits", "noise_scale", "time_s", "inputs")},
            }
        )
    return rows


def _js_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of :func:`js_summary` (none when no cell has the metric): the output
    layer (the last analog layer: the logits of a classifier) and the mean over layers, as
    methods may differ in their analog layers (a stochastic residual adds some)."""
    if not rows:
        return []
    first = rows[0]
    lines = [
        "",
        f"## Calibration: JS divergence, simulator vs chip activations (nats), "
        f"{first['bits']}-bit, noise × {first['noise_scale']:g}, t = {first['time_s']:g} s",
        "",
        "Per analog layer, the Jensen–Shannon divergence between its output values on the "
        f"training simulator and on each chip, {first['inputs']} test inputs; mean ± std over "
        "chips × seeds. Floor: simulator vs a second simulator pass (the estimator's bias). "
        "Every layer: `summary.json`.",
        "",
        "| method | output layer | mean over layers | floor (mean over layers) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        output = list(row["layers"])[-1]
        (m_out, s_out), (mean, std) = row["layers"][output], row["mean_over_layers"]
        lines.append(
            f"| {row['method']} | {m_out:.4f} ± {s_out:.4f} (`{output}`) | "
            f"{mean:.4f} ± {std:.4f} | {row['floor']:.4f} |"
        )
    return lines


def _find(rows: list[dict[str, Any]], label: str, bits: int, scale: float, time_s: float) -> dict:
    return next(
        r
        for r in rows
        if (r["method"], r["bits"], r["noise_scale"], r["time_s"]) == (label, bits, scale, time_s)
    )


def _plot(
    config: dict[str, Any], chips: list[dict[str, Any]], base_noise: float, fp32: float, path: Path
) -> Path:
    plt = pyplot()
    ev = config["eval"]
    rows_, cols_ = len(ev["bits"]), len(ev["times"])
    fig, axes = plt.subplots(
        rows_, cols_, figsize=(5 * cols_, 3.8 * rows_), squeeze=False, sharey=True
    )
    panels = [(b, t) for b in ev["bits"] for t in ev["times"]]
    for ax, (bits, time_s) in zip(axes.flat, panels, strict=True):
        for label in dict.fromkeys(r["method"] for r in chips):
            rows = [_find(chips, label, bits, s, time_s) for s in ev["noise_scales"]]
            ax.errorbar(
                [base_noise * s for s in ev["noise_scales"]],
                [100 * r["accuracy_mean"] for r in rows],
                yerr=[100 * r["accuracy_std"] for r in rows],
                marker="o",
                capsize=3,
                label=label,
            )
        ax.axhline(100 * fp32, color="k", linestyle=":", label="FP32 digital")
        ax.set_xlabel("weight noise (% of row max |W|)")
        ax.set_ylabel("test accuracy on chips (%)")
        ax.set_title(f"{bits}-bit weights, t = {time_s:g} s")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    suptitle(
        fig,
        f"{config['name']}: {config['dataset']} / {config['model']} "
        "(read noise scaled alike; mean ± std over chips × seeds)",
    )
    fig.tight_layout()
    return save_figure(fig, path)
