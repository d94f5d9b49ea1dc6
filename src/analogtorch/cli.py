"""The ``analogtorch`` command line (typer + rich).

Errors a user can fix (bad profile values, missing files, bad options) print one line,
``error: ...``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .ais.cli import ais_app, run_ais_study
from .deq.cli import deq_app
from .hardware.profile import HardwareProfile, preset_names

app = typer.Typer(
    help="Train neural networks that stay accurate on analog in-memory-computing hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profile_app = typer.Typer(help="Inspect and validate hardware profiles.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
app.add_typer(deq_app, name="deq")
app.add_typer(ais_app, name="ais")
console = Console()


def load_profile(spec: str) -> HardwareProfile:
    """A preset name or a path to a YAML profile."""
    return HardwareProfile.from_spec(spec)


@app.command()
def demo(
    name: Annotated[str | None, typer.Option(help="run name (default demo-<timestamp>)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="folder holding run folders")] = Path("runs"),
    profile: Annotated[
        str | None, typer.Option(help="chip profile: preset name or YAML path (default: demo)")
    ] = None,
    chips: Annotated[int, typer.Option(min=1, help="chips per noise level and time")] = 10,
    seed: Annotated[int, typer.Option(help="seed of data split, init, noise and chips")] = 0,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train digital, noise-injection and HWA models on bundled digits; evaluate on chips.

    Evaluates each model on many chips across noise levels and times since programming,
    prints a table and writes results.json, results.csv and accuracy_vs_noise.png.
    """
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(seed=seed, n_chips=chips)
    if profile is not None:
        cfg = DemoConfig(seed=seed, n_chips=chips, profile=load_profile(profile))
    run_name = name or f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    out_dir = runs_dir / run_name
    report = run_demo(out_dir, cfg, show_progress=progress)
    nominal = [r for r in report.rows if r.setting != "chip" or r.noise_scale == 1.0]
    from .train.evaluate import EvaluationReport

    console.print(
        EvaluationReport(nominal).table(
            title=f"Accuracy (%) at the profile's nominal noise, mean ± std over {chips} chips"
        )
    )
    console.print(
        f"all rows, plot and record: [bold]{out_dir}[/] "
        "(results.csv, results.json, accuracy_vs_noise.png)"
    )


@app.command()
def energy(
    target: Annotated[
        str, typer.Argument(help="model name (see --list) or an energy study YAML config")
    ],
    profile: Annotated[
        str | None, typer.Option(help="preset name or YAML profile (model targets; default pcm)")
    ] = None,
    baseline: Annotated[
        list[str] | None, typer.Option(help="digital baseline(s) to compare (repeatable)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/...)")] = None,
    seed: Annotated[int, typer.Option(help="weight-initialisation seed of a named model")] = 0,
    json_only: Annotated[bool, typer.Option("--json", help="print the JSON record only")] = False,
) -> None:
    """Energy, latency and area per inference on analog hardware vs digital baselines.

    TARGET is a reference model (demo-mlp, mnist-mlp, mnist-cnn, cifar-resnet20, deq-mlp)
    or a study config from experiments/energy/. Prints a table and writes a JSON record and
    a stacked-bar breakdown plot.
    """
    from .energy import DEFAULT_BASELINES, estimate
    from .energy.studies import load_config, run_study
    from .models import build_model

    if target.endswith((".yaml", ".yml")):
        if profile is not None or baseline:
            raise ValueError("--profile/--baseline apply to model targets; a config sets its own")
        config = load_config(target)
        out_dir = out or Path("runs") / f"energy-{config['name']}"
        markdown = run_study(config, out_dir)
        if not json_only:
            console.print(markdown)
        console.print(f"record and plots: [bold]{out_dir}[/]")
        return
    hardware = load_profile(profile or "pcm")
    model, shape = build_model(target, seed=seed)
    report = estimate(model, hardware, shape, baselines=baseline or DEFAULT_BASELINES, name=target)
    out_dir = out or Path("runs") / f"energy-{target}-{hardware.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = report.to_json(out_dir / "energy.json")
    report.plot(out_dir / "energy.png")
    if json_only:
        typer.echo(text)
        return
    console.print(report.table())
    console.print(
        f"{report.tops_per_watt:.3g} TOPS/W; "
        + "; ".join(f"{b} uses ×{report.ratio(b):.3g} the energy" for b in report.baselines)
    )
    console.print("assumptions:\n" + "\n".join(f"  - {a}" for a in report.assumptions))
    console.print(f"record and plot: [bold]{out_dir}[/] (energy.json, energy.png)")


def find_study(name: str) -> Path:
    """A study config: a YAML path, or the name of one under ``experiments/`` (any folder)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise FileNotFoundError(f"study config {name!r} does not exist")
        return path
    matches = sorted(Path("experiments").glob(f"*/{name}.yaml"))
    if not matches:
        known = sorted(p.stem for p in Path("experiments").glob("*/*.yaml"))
        raise FileNotFoundError(
            f"no study named {name!r} under ./experiments/*/ (run from the repository root "
            f"or give the YAML path); known: {', '.join(known) or 'none'}"
        )
    if len(matches) > 1:
        raise ValueError(f"study name {name!r} is ambiguous: {[str(m) for m in matches]}")
    return matches[0]


@app.command()
def study(
    name: Annotated[str, typer.Argument(help="study name (experiments/*/NAME.yaml) or YAML path")],
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/NAME)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder")] = None,
    backend: Annotated[str, typer.Option(help="local, or ray (cells on a Ray cluster)")] = "local",
) -> None:
    """Run (or resume: finished cells in OUT/cells are kept) a study by name.

    Robustness studies (kind: robustness) train each method per seed and score it on chips
    over precision, noise and time; AIS studies (kind: ais) train and score generators;
    DEQ studies (kind: classification | physics) are run as
    by ``analogtorch deq study``. Writes CSV/JSON, markdown tables and plots to OUT.
    """
    import yaml

    path = find_study(name)
    kind = (yaml.safe_load(path.read_text()) or {}).get("kind", "robustness")
    out_dir = out or Path("runs") / path.stem
    if kind == "robustness":
        from .train.robustness import load_study, run_study
        from .train.robustness_report import write_report

        config = load_study(path)
        records = run_study(config, out_dir, data_dir=data_dir, backend=backend)
        markdown = write_report(config, records, out_dir)
    elif kind in ("classification", "physics"):
        from .deq.study import load_study as load_deq_study
        from .deq.study import run_deq_study

        markdown = run_deq_study(
            load_deq_study(path), out_dir, data_dir=data_dir, backend=backend, show_progress=True
        )
    elif kind == "ais":
        markdown = run_ais_study(path, out_dir, data_dir, backend)
    else:
        raise ValueError(f"{path}: kind={kind!r}: use robustness, ais, classification or physics")
    console.print(markdown, markup=False)
    console.print(f"record, tables and plots: [bold]{out_dir}[/]")


@app.command()
def calibrate(
    measurements: Annotated[
        Path, typer.Argument(help="measurement CSV (schema: docs/calibration.md)")
    ],
    base: Annotated[
        str, typer.Option(help="profile to start from: preset name or YAML path")
    ] = "pcm",
    out: Annotated[
        Path | None, typer.Option(help="output folder (default runs/calibrate-<file stem>)")
    ] = None,
    plot: Annotated[bool, typer.Option(help="write fit.png (fit vs data)")] = True,
) -> None:
    """Fit profile parameters (drift, read and programming noise, transfer curve, IR drop)
    to measurements; write the calibrated profile.yaml, fit.json and fit.png.
    """
    from .hardware.calibrate import calibrate as run_calibration
    from .hardware.measurements import load_measurements

    result = run_calibration(load_measurements(measurements), load_profile(base))
    out_dir = out or Path("runs") / f"calibrate-{measurements.stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    result.profile.to_yaml(out_dir / "profile.yaml")
    result.to_json(out_dir / "fit.json")
    if plot:
        result.plot(out_dir / "fit.png")

    table = Table(title=f"calibrated from {measurements.name} (base {result.base.name})")
    for column in ("kind", "parameter", "fit ± std. error", "base"):
        table.add_column(column, justify="left" if column in ("kind", "parameter") else "right")
    for kind, name, estimate, base_value in result.rows():
        base_text = f"{base_value:.4g}" if isinstance(base_value, float) else str(base_value or "")
        table.add_row(kind, name, str(estimate), base_text)
    console.print(table)
    fit_table = Table(title="goodness of fit")
    fit_table.add_column("kind")
    fit_table.add_column("statistics")
    for kind, fit in result.fits.items():
        stats = ", ".join(f"{k}={v:.4g}" for k, v in fit.goodness().items())
        fit_table.add_row(kind, stats)
    console.print(fit_table)
    files = "profile.yaml, fit.json" + (", fit.png" if plot else "")
    console.print(f"calibrated profile and record: [bold]{out_dir}[/] ({files})")


@app.command()
def hil(
    config: Annotated[Path, typer.Argument(help="HIL study config (experiments/hil/*.yaml)")],
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/...)")] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="dataset folder (default: the usual search order)")
    ] = None,
) -> None:
    """Surrogate-only vs hardware-in-the-loop vs calibrated-surrogate training on VirtualChips
    (resumable: finished cells in OUT/cells are kept), or, for a config with
    ``kind: spice-check``, a small network on ngspice vs the hardware model.
    """
    import yaml

    from .hil.spice_check import run_spice_check
    from .hil.study import load_study, run_hil_study

    if not config.is_file():
        raise FileNotFoundError(f"HIL config {str(config)!r} does not exist")
    if (yaml.safe_load(config.read_text()) or {}).get("kind") == "spice-check":
        spice = yaml.safe_load(config.read_text())
        out_dir = out or Path("runs") / f"hil-{spice['name']}"
        markdown = run_spice_check(spice, out_dir)
    else:
        study = load_study(config)
        out_dir = out or Path("runs") / f"hil-{study['name']}"
        markdown = run_hil_study(study, out_dir, data_dir, log=console.print)
    console.print(markdown)
    console.print(f"record and plot: [bold]{out_dir}[/]")


@app.command("presets")
def presets() -> None:
    """List the shipped hardware presets."""
    table = Table(title="hardware presets")
    table.add_column("name")
    table.add_column("description")
    for preset in preset_names():
        table.add_row(preset, HardwareProfile.preset(preset).description)
    console.print(table)


@profile_app.command("show")
def profile_show(
    spec: Annotated[str, typer.Argument(help="preset name or YAML file")],
) -> None:
    """Validate a profile and print it as YAML."""
    typer.echo(load_profile(spec).to_yaml(), nl=False)


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as err:  # bad option value, unknown command, ...
        message = err.format_message()
        if message:  # empty when no arguments were given and the help was printed
            print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError) as err:  # bad input or configuration, a file problem
        # (TypeError and the rest are bugs: they keep their traceback.)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
