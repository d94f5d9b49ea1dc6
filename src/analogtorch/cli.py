"""The ``analogtorch`` command line (typer + rich).

Errors a user can fix (bad profile values, missing files, bad options) print one line,
``error: ...``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .ais.cli import ais_app, run_ais_study
from .cli_options import Backend, BackendOption, DeviceOption, OutOption, OverwriteOption
from .config_files import find_config, load_yaml_mapping, shipped_configs
from .deq.cli import deq_app
from .devices import resolve_device
from .energy.study_config import KINDS as ENERGY_KINDS
from .hardware.profile import HardwareProfile, preset_names
from .ray_backend import CellFailedError

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


def _version(value: bool) -> None:
    if value:
        from .runs import package_version

        typer.echo(f"analogtorch {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bars")] = False,
) -> None:
    """Train neural networks that stay accurate on analog in-memory-computing hardware."""
    from .progress import set_quiet

    set_quiet(quiet)


def load_profile(spec: str) -> HardwareProfile:
    """A preset name or a path to a YAML profile."""
    return HardwareProfile.from_spec(spec)


@app.command()
def demo(
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    profile: Annotated[
        str | None, typer.Option(help="chip profile: preset name or YAML path (default: demo)")
    ] = None,
    chips: Annotated[int, typer.Option(min=1, help="chips per noise level and time")] = 10,
    seed: Annotated[int, typer.Option(help="seed of data split, init, noise and chips")] = 0,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train digital, noise-injection and hardware-aware MLPs on bundled digits; score on chips.

    Each model is scored on many chips across noise levels and times since programming;
    prints a table and writes report.md, summary.json, results.csv and accuracy_vs_noise.png.
    """
    from dataclasses import asdict

    from .demo import DemoConfig, run_demo
    from .runs import open_run
    from .train.evaluate import EvaluationReport

    cfg = DemoConfig(seed=seed, n_chips=chips)
    if profile is not None:
        cfg = DemoConfig(seed=seed, n_chips=chips, profile=load_profile(profile))
    config = {**asdict(cfg), "profile": cfg.profile.model_dump(mode="json")}
    with open_run("demo", "digits-mlp", config, out=out, overwrite=overwrite) as run:
        report = run_demo(run.path, cfg, show_progress=progress)
    nominal = [r for r in report.rows if r.setting != "chip" or r.noise_scale == 1.0]
    console.print(
        EvaluationReport(nominal).table(
            title=f"Accuracy (%) at the profile's nominal noise, mean ± std over {chips} chips"
        )
    )
    console.print(
        f"all rows, plot and record: [bold]{run.path}[/] "
        "(report.md, summary.json, results.csv, accuracy_vs_noise.png)"
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
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    seed: Annotated[int, typer.Option(help="weight-initialisation seed of a named model")] = 0,
    json_only: Annotated[bool, typer.Option("--json", help="print the JSON record only")] = False,
) -> None:
    """Energy, latency and area per inference on analog hardware vs digital baselines.

    TARGET is a reference model (demo-mlp, mnist-mlp, mnist-cnn, cifar-resnet20,
    cifar-resnet20x2, deq-mlp) or an energy study config (experiments/energy/). Prints a table
    and writes report.md, summary.json and a breakdown plot.
    """
    from .energy import DEFAULT_BASELINES, estimate
    from .energy.studies import load_config, run_study
    from .models import build_model
    from .runs import open_run

    if target.endswith((".yaml", ".yml")):
        if profile is not None or baseline:
            raise ValueError("--profile/--baseline apply to model targets; a config sets its own")
        config = load_config(target)
        with open_run("energy", config["name"], config, out=out, overwrite=overwrite) as run:
            markdown = run_study(config, run.path)
        if not json_only:
            console.print(markdown)
        console.print(f"report, record and plots: [bold]{run.path}[/]")
        return
    hardware = load_profile(profile or "pcm")
    model, shape = build_model(target, seed=seed)
    baselines = baseline or list(DEFAULT_BASELINES)
    config = {
        "model": target,
        "seed": seed,
        "baselines": baselines,
        "profile": hardware.model_dump(mode="json"),
    }
    name = f"{target}-{hardware.name}"
    with open_run("energy", name, config, out=out, overwrite=overwrite) as run:
        report = estimate(model, hardware, shape, baselines=baselines, name=target)
        text = report.to_json(run.file("summary.json"))
        report.plot(run.file("energy.png"))
        run.write_text("report.md", report.markdown())
    out_dir = run.path
    if json_only:
        typer.echo(text)
        return
    wide = console.width >= 150
    console.print(report.table(detailed=wide))
    if not wide:
        console.print(report.parts_table())
    console.print(
        f"{report.tops_per_watt:.3g} TOPS/W; "
        + "; ".join(f"{b} uses ×{report.ratio(b):.3g} the energy" for b in report.baselines)
    )
    console.print("assumptions:\n" + "\n".join(f"  - {a}" for a in report.assumptions))
    console.print(
        f"report, record and plot: [bold]{out_dir}[/] (report.md, summary.json, energy.png)"
    )


@app.command()
def study(
    name: Annotated[
        str | None, typer.Argument(help="a shipped study's name (see --list) or a YAML path")
    ] = None,
    list_studies: Annotated[
        bool, typer.Option("--list", help="list the shipped studies and exit")
    ] = False,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder")] = None,
    backend: BackendOption = Backend.local,
    device: DeviceOption = "cpu",
) -> None:
    """Run or resume a study (a shipped name, see --list, or a YAML path).

    Robustness studies train each method per seed and score it on chips over precision,
    noise and time; AIS studies train and score generators; DEQ studies (classification,
    physics) run as with "analogtorch deq study". Finished cells are kept. Writes report.md,
    summary.json, results.csv (robustness) and plots.
    """
    from .runs import config_datasets, data_identity, open_run, resolve_data_dir

    if list_studies:
        _list_studies()
        return
    if name is None:
        raise ValueError("give a study name or YAML path, or --list to see the shipped ones")
    path = find_config(name)
    on = str(resolve_device(device))
    config, runner = _study_runner(path, on)
    dataset = config_datasets(config)
    data = data_identity(dataset, data_dir)
    data_dir = resolve_data_dir(dataset, data_dir)  # explicit: cells read nothing of their own
    with open_run(
        "study", config["name"], config, out=out, overwrite=overwrite, data=data, device=on
    ) as run:
        markdown = runner(config, run.path, data_dir, backend.value)
    console.print(markdown, markup=False)
    console.print(f"report, record and plots: [bold]{run.path}[/]")


@app.command("export")
def export_model(
    name: Annotated[str, typer.Argument(help="the robustness study (shipped name or YAML path)")],
    to: Annotated[Path, typer.Argument(help="the model file to write")],
    run: Annotated[Path, typer.Option(help="the study's run folder (its --out)")],
    method: Annotated[str, typer.Option(help="the method's label in the study")],
    seed: Annotated[int, typer.Option(help="the seed of the cell")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder")] = None,
) -> None:
    """Write the trained model of one study cell as one file (load it with analogtorch.load):
    weights, learned ranges, hardware profiles; images in [0, 1] for image studies."""
    from .runs import check_run, resolve_data_dir
    from .studies.cell_export import export_cell_model
    from .train.robustness import load_study

    path = find_config(name)
    kind = load_yaml_mapping(path, "study config").get("kind", "robustness")
    if kind != "robustness":
        raise ValueError(f"{path}: export takes robustness studies, this one is kind={kind!r}")
    config = load_study(path)
    check_run(run, "study", config)
    data_dir = resolve_data_dir(config["dataset"], data_dir)
    export_cell_model(config, run, method, seed, to, data_dir=data_dir)
    console.print(f"model of {method} (seed {seed}) written to [bold]{to}[/]")


def _list_studies() -> None:
    table = Table(title="shipped studies (analogtorch study NAME)")
    table.add_column("name")
    table.add_column("kind")
    table.add_column("what", overflow="fold")
    for key, path in shipped_configs().items():
        data = load_yaml_mapping(path, "study config")
        family = key.split("/")[0]
        kind = data.get("kind", family)
        text = " ".join(str(data.get("description", "")).split())
        table.add_row(path.stem, str(kind), text[:120])
    console.print(table)


def _study_runner(path: Path, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """The resolved config of the study at ``path`` and the function that runs it on
    ``device``, ``runner(config, out_dir, data_dir, backend) -> markdown``."""
    data = load_yaml_mapping(path, "study config")
    kind = data.get("kind") or ("hil" if path.parent.name == "hil" else "robustness")
    if device != "cpu" and kind not in ("robustness", "ais"):
        raise ValueError(
            f"--device {device}: only robustness and AIS studies run on a GPU so far; "
            f"{path.name} is a {kind} study and runs on the CPU (leave --device out)"
        )
    if kind == "robustness":
        from .train.robustness import load_study, run_study
        from .train.robustness_report import write_report

        def run_robustness(config, out_dir, data_dir, backend):  # type: ignore[no-untyped-def]
            records = run_study(config, out_dir, data_dir=data_dir, backend=backend, device=device)
            return write_report(config, records, out_dir)

        return load_study(path), run_robustness
    if kind in ("classification", "physics", "swingup"):
        from .deq.study import load_study as load_deq_study
        from .deq.study import run_deq_study

        def run_deq(config, out_dir, data_dir, backend):  # type: ignore[no-untyped-def]
            return run_deq_study(
                config, out_dir, data_dir=data_dir, backend=backend, show_progress=True
            )

        return load_deq_study(path), run_deq
    if kind == "ais":
        from .ais.study import load_study as load_ais_study

        def run_ais(config, out_dir, data_dir, backend):  # type: ignore[no-untyped-def]
            return run_ais_study(config, out_dir, data_dir, backend, device)

        return load_ais_study(path), run_ais
    if kind in ENERGY_KINDS:
        from .energy.studies import load_config, run_study

        return load_config(path), lambda config, out_dir, *_: run_study(config, out_dir)
    if kind == "spice-check":
        from .hil.spice_check import run_spice_check
        from .hil.study_config import load_config as load_hil_config

        return load_hil_config(path), lambda config, out_dir, *_: run_spice_check(config, out_dir)
    if kind == "hil":
        from .hil.study import run_hil_study
        from .hil.study_config import load_config as load_hil_config

        def run_hil(config, out_dir, data_dir, backend):  # type: ignore[no-untyped-def]
            return run_hil_study(config, out_dir, data_dir, backend=backend, show_progress=True)

        return load_hil_config(path), run_hil
    raise ValueError(
        f"{path}: kind={kind!r}: use robustness, ais, classification, physics, hil, "
        f"spice-check or one of the energy kinds {ENERGY_KINDS}"
    )


@app.command()
def calibrate(
    measurements: Annotated[
        Path, typer.Argument(help="measurement CSV (schema: docs/calibration.md)")
    ],
    base: Annotated[
        str, typer.Option(help="profile to start from: preset name or YAML path")
    ] = "pcm",
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    plot: Annotated[bool, typer.Option(help="write fit.png (fit vs data)")] = True,
) -> None:
    """Fit a hardware profile to measurements (drift, noise, transfer curve, IR drop).

    Writes the calibrated profile.yaml, report.md, summary.json and fit.png.
    """
    import hashlib

    from .hardware.calibrate import calibrate as run_calibration
    from .hardware.measurements import load_measurements
    from .runs import open_run

    data = load_measurements(measurements)
    base_profile = load_profile(base)
    config = {"measurements": measurements.name, "base": base_profile.model_dump(mode="json")}
    digest = hashlib.sha256(measurements.read_bytes()).hexdigest()[:16]
    name = measurements.stem
    with open_run("calibrate", name, config, out=out, overwrite=overwrite, data=digest) as run:
        result = run_calibration(data, base_profile)
        run.write_text("profile.yaml", result.profile.to_yaml())
        result.to_json(run.file("summary.json"))
        if plot:
            result.plot(run.file("fit.png"))
        rows = [
            (
                kind,
                name,
                str(estimate),
                f"{value:.4g}" if isinstance(value, float) else str(value or ""),
            )
            for kind, name, estimate, value in result.rows()
        ]
        fits = [
            (kind, ", ".join(f"{k}={v:.4g}" for k, v in fit.goodness().items()))
            for kind, fit in result.fits.items()
        ]
        run.write_text("report.md", _calibration_markdown(measurements.name, result, rows, fits))
    table = Table(title=f"calibrated from {measurements.name} (base {result.base.name})")
    for column in ("kind", "parameter", "fit ± std. error", "base"):
        table.add_column(column, justify="left" if column in ("kind", "parameter") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    fit_table = Table(title="goodness of fit")
    fit_table.add_column("kind")
    fit_table.add_column("statistics")
    for row in fits:
        fit_table.add_row(*row)
    console.print(fit_table)
    files = "profile.yaml, report.md, summary.json" + (", fit.png" if plot else "")
    console.print(f"calibrated profile and record: [bold]{run.path}[/] ({files})")


def _calibration_markdown(source: str, result, rows, fits) -> str:  # type: ignore[no-untyped-def]
    lines = [
        f"# Calibrated from {source} (base {result.base.name})",
        "",
        "| kind | parameter | fit ± std. error | base |",
        "|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "| kind | goodness of fit |",
        "|---|---|",
        *(f"| {kind} | {stats} |" for kind, stats in fits),
        "",
        "The calibrated profile: `profile.yaml`. Fit against the data: `fit.png`.",
    ]
    return "\n".join(lines) + "\n"


@app.command()
def hil(
    config: Annotated[Path, typer.Argument(help="HIL study config (experiments/hil/*.yaml)")],
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="dataset folder (default: the usual search order)")
    ] = None,
) -> None:
    """Hardware-in-the-loop vs surrogate-only vs I/O-twin training (and, with "calibrate:",
    a calibrated physical surrogate refreshed from chip measurements).

    Trains on VirtualChips (finished cells are kept), or, for a config with
    "kind: spice-check", runs a small network on ngspice against the hardware model.
    """
    from .hil.spice_check import run_spice_check
    from .hil.study import run_hil_study
    from .hil.study_config import load_config as load_hil_config
    from .runs import data_identity, open_run

    settings = load_hil_config(config)
    if settings["kind"] == "spice-check":
        run_it = partial(run_spice_check, settings)
    else:
        run_it = partial(run_hil_study, settings, data_dir=data_dir, show_progress=True)
    data = data_identity(settings.get("dataset"), data_dir)
    name = settings["name"]
    with open_run("hil", name, settings, out=out, overwrite=overwrite, data=data) as run:
        markdown = run_it(run.path)
    console.print(markdown, markup=False)
    console.print(f"report, record and plot: [bold]{run.path}[/]")


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


def _one_line(text: str) -> str:
    """``text`` on one line: line breaks and other unprintable characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())


INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (128 + SIGINT)


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
            print(f"error: {_one_line(message)}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError) as err:  # bad input or configuration, a file problem
        # (TypeError and the rest are bugs: they keep their traceback.)
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(2)
    except CellFailedError as err:  # cells that raised on a cluster: their logs are kept
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(1)
    if code == INTERRUPTED:  # typer returns Ctrl-C as this exit code, silently
        print(
            "error: interrupted; what was finished is kept (run folders resume per cell and "
            "checkpoint): run the same command again to continue",
            file=sys.stderr,
        )
    sys.exit(code if isinstance(code, int) else 0)
