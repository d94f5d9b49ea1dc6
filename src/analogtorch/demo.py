"""`analogtorch demo`: the main job on scikit-learn's bundled digits, in about a minute.

Trains three versions of one MLP (64-128-128-10) and evaluates each on the same chips:

* **digital** — FP32 training, then programmed onto chips as is;
* **noise injection** — fine-tuned with Gaussian weight noise of the nominal strength and
  nothing else in the loop (Zhou et al., "Noisy Machines", 2020);
* **hardware-aware (HWA)** — fine-tuned with the full surrogate in the loop (4-bit
  weights, 8-bit DAC/ADC, weight and read noise, learned converter ranges).

Chips follow :data:`DEMO_PROFILE` (the seeds' 4-bit / 10 % setting plus PCM read noise and
drift); accuracy is reported ideal (noise-free hardware) and as mean ± std over chips per
noise level and time after programming, and as the yield at "within 1 point of digital": the
share of chips with accuracy >= the digital model's FP32 accuracy - 0.01, with its 95 %
Clopper–Pearson interval (printed at the nominal noise). Writes ``summary.json``,
``results.csv``, ``report.md``, ``accuracy_vs_noise.png`` and ``yield_curve.png`` to the run
folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from . import models
from .data import Split, make_loader
from .figures import pyplot, save_figure, suptitle
from .files import write_atomic, write_json
from .hardware.profile import HardwareProfile
from .hardware.random import seed_noise
from .nn.convert import convert
from .train.chip_yield import YieldReport
from .train.evaluate import EvalRow, EvaluationReport, accuracy, evaluate
from .train.fit import fit

DEMO_PROFILE = HardwareProfile.preset("seed-4bit-10pct").replace(
    name="demo",
    description="seed-4bit-10pct with PCM read noise and drift (Joshi et al. 2020)",
    read_noise_std=0.02,
    drift_nu_mean=0.049,
    drift_nu_std=0.008,
    drift_t0_seconds=20.0,
    drift_compensation=True,
)

MODEL_NAMES = ("digital", "noise injection", "HWA")
YIELD_WITHIN = 0.01  # the spec: within 1 accuracy point of the digital model


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines a demo run's numbers."""

    seed: int = 0
    n_chips: int = 10
    noise_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    times_s: tuple[float, ...] = (1.0, 3600.0, 86400.0)
    digital_epochs: int = 60
    finetune_epochs: int = 80
    batch_size: int = 64
    hidden: int = 128
    test_fraction: float = 0.2
    profile: HardwareProfile = field(default=DEMO_PROFILE)


def digits_splits(seed: int, test_fraction: float) -> tuple[Split, Split]:
    """scikit-learn's 8x8 digits (1797 images), pixels scaled to [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=test_fraction,
        random_state=seed,
        stratify=labels.numpy(),
    )
    return (Split(images[train_idx], labels[train_idx]), Split(images[test_idx], labels[test_idx]))


def build_mlp(hidden: int, seed: int) -> nn.Sequential:
    """MLP 64-hidden-hidden-10 initialised from ``seed`` (global RNG left untouched)."""
    return models.build_mlp(64, (hidden, hidden), 10, seed=seed)


def train_models(cfg: DemoConfig, train: Split, show_progress: bool) -> dict[str, nn.Module]:
    """The digital, noise-injection and HWA models (the last two fine-tuned from digital)."""
    loader = make_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed)
    digital = build_mlp(cfg.hidden, cfg.seed)
    fit(
        digital,
        loader,
        epochs=cfg.digital_epochs,
        lr=3e-3,
        label="digital",
        show_progress=show_progress,
    )
    injection_profile = HardwareProfile(
        name="noise-injection", prog_noise_std=cfg.profile.prog_noise_std
    )
    models: dict[str, nn.Module] = {"digital": digital}
    for name, profile in (("noise injection", injection_profile), ("HWA", cfg.profile)):
        model = seed_noise(convert(digital, profile), cfg.seed)
        fit(
            model,
            make_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed),
            epochs=cfg.finetune_epochs,
            lr=1e-3,
            label=name,
            show_progress=show_progress,
        )
        models[name] = model
    return models


def plot_accuracy_vs_noise(report: EvaluationReport, cfg: DemoConfig, path: Path) -> Path:
    """Accuracy (mean ± std over chips) vs weight-noise level, one panel per time."""
    plt = pyplot()

    nominal = 100 * cfg.profile.prog_noise_std
    fig, axes = plt.subplots(
        1, len(cfg.times_s), figsize=(4.2 * len(cfg.times_s), 3.6), sharey=True, squeeze=False
    )
    for ax, t in zip(axes[0], cfg.times_s, strict=True):
        for name in MODEL_NAMES:
            rows = report.select(model=name, setting="chip", time_s=t)
            ax.errorbar(
                [nominal * r.noise_scale for r in rows],
                [100 * r.accuracy_mean for r in rows],
                yerr=[100 * r.accuracy_std for r in rows],
                marker="o",
                capsize=3,
                label=name,
            )
        ax.axvline(nominal, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"t = {t:g} s after programming")
        ax.set_xlabel("weight-noise std (% of g_max); other noise scaled alike")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test accuracy (%), mean ± std over {cfg.n_chips} chips")
    axes[0][-1].legend(loc="lower left")
    suptitle(fig, f"digits MLP on '{cfg.profile.name}' chips")
    fig.tight_layout()
    return save_figure(fig, path)


def shown_noise_scale(cfg: DemoConfig) -> float:
    """The noise scale the yield is printed and plotted at: nominal (1) when it was run."""
    return 1.0 if 1.0 in cfg.noise_scales else max(cfg.noise_scales)


def plot_yield(report: EvaluationReport, cfg: DemoConfig, path: Path) -> Path:
    """Yield curves of every model at the nominal noise, the longest time after programming."""
    t, scale = max(cfg.times_s), shown_noise_scale(cfg)
    digital = report.select(setting="fp32")[0].accuracy_mean
    return report.plot_yield(
        path,
        spec=digital - YIELD_WITHIN,
        title=f"digits MLP on {cfg.n_chips} '{cfg.profile.name}' chips, {scale:g}× noise, "
        f"t = {t:g} s; spec: digital - {100 * YIELD_WITHIN:g} point",
        noise_scale=scale,
        time_s=t,
    )


def run_demo(
    out_dir: Path, cfg: DemoConfig | None = None, show_progress: bool = True
) -> EvaluationReport:
    """Train, evaluate and write results to ``out_dir``; returns the evaluation report."""
    cfg = cfg or DemoConfig()
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = digits_splits(cfg.seed, cfg.test_fraction)
    models = train_models(cfg, train, show_progress)
    test_loader = make_loader(test, 512, shuffle=False)
    report = EvaluationReport(
        [EvalRow("digital", "fp32", 0.0, 0.0, accuracy(models["digital"], test_loader), 0.0, 1)]
    )
    for name, model in models.items():
        report += evaluate(
            model,
            test_loader,
            cfg.n_chips,
            cfg.times_s,
            profile=cfg.profile,
            noise_scales=cfg.noise_scales,
            seed=cfg.seed,
            label=name,
            show_progress=show_progress,
        )
    elapsed = time.perf_counter() - start
    within = report.yield_at(within=YIELD_WITHIN)
    report.to_csv(out_dir / "results.csv")
    record = {
        "config": {k: v for k, v in cfg.__dict__.items() if k != "profile"},
        "profile": cfg.profile.model_dump(mode="json"),
        "dataset": "scikit-learn digits (8x8), stratified split",
        "elapsed_s": elapsed,
        "rows": report.to_dicts(),
        "chips": [asdict(c) for c in report.chips],
        "yield": {"within_of_digital": YIELD_WITHIN, "rows": within.to_dicts()},
    }
    write_json(out_dir / "summary.json", record)
    write_atomic(
        out_dir / "report.md",
        f"# demo: digits MLP on '{cfg.profile.name}' chips\n\n{report.to_markdown()}\n"
        "![accuracy vs noise](accuracy_vs_noise.png)\n\n"
        f"## Yield: chips within {100 * YIELD_WITHIN:g} point of digital (95 % CI)\n\n"
        f"{within.to_markdown()}\n![yield curve](yield_curve.png)\n",
    )
    plot_accuracy_vs_noise(report, cfg, out_dir / "accuracy_vs_noise.png")
    plot_yield(report, cfg, out_dir / "yield_curve.png")
    scale = shown_noise_scale(cfg)
    Console().print(
        f"Yield at {scale:g}× noise: chips within {100 * YIELD_WITHIN:g} point of digital "
        f"(accuracy >= {100 * within.rows[0].threshold:.1f} %)\n"
        f"{YieldReport(within.select(noise_scale=scale))}",
        markup=False,
    )
    return report
