"""``analogtorch ais ...``: train, sample and score Analog Interaction System generators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..cli_options import Backend, BackendOption, DeviceOption, OutOption, OverwriteOption
from ..devices import resolve_device
from ..files import write_json

ais_app = typer.Typer(
    help="Analog Interaction Systems: generative models sampled by oscillator/Ising dynamics.",
    no_args_is_help=True,
)
console = Console()


@ais_app.command("train")
def train(
    dataset: Annotated[str, typer.Option(help="mnist or fashion-mnist")] = "mnist",
    kind: Annotated[str, typer.Option(help="oscillator, ising, mlp or rbm")] = "oscillator",
    image_size: Annotated[int, typer.Option(help="images are resized to this (pixels)")] = 14,
    hidden: Annotated[int, typer.Option(help="hidden physical units")] = 64,
    segments: Annotated[int, typer.Option(help="piecewise-constant parameter segments")] = 4,
    bits: Annotated[int, typer.Option(help="coupling bits (0: full precision)")] = 4,
    mask: Annotated[str, typer.Option(help="local, random, block or dense")] = "local",
    steps: Annotated[int, typer.Option(help="WGAN-GP generator steps")] = 600,
    seed: Annotated[int, typer.Option(help="seed of everything random")] = 0,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder")] = None,
    device: DeviceOption = "cpu",
) -> None:
    """Train one generator; resumes from its checkpoint and writes sample grids."""
    from ..runs import data_identity, open_run
    from .study import complete_config, train_model

    options = {
        "n_hidden": hidden,
        "segments": segments,
        "steps_per_segment": max(1, 20 // segments),
        "dt": 0.25,
        "mask": mask,
        "bits": bits or None,
    }
    entry = {"label": kind, "kind": kind, "options": options if kind != "rbm" else {}}
    reference = {"label": "reference", "kind": "oscillator", "options": options}
    models = (
        [entry] if kind in ("oscillator", "ising") else [entry | {"match": "reference"}, reference]
    )
    config = complete_config(
        {
            "name": f"ais-{kind}",
            "dataset": dataset,
            "image_size": image_size,
            "wgan": {
                "steps": steps,
                "batch_size": 32,
                "lr_g": 5e-4,
                "lr_d": 5e-4,
                "betas": [0.5, 0.9],
                "sample_every": 100,
                "checkpoint_every": 50,
            },
            "models": models,
            "seeds": [seed],
        }
    )
    spec = {"config": config, "entry": entry, "seed": seed}
    data = data_identity(dataset, data_dir)
    name = f"{kind}-{dataset}"
    on = str(resolve_device(device))
    with open_run(
        "ais-train", name, spec, out=out, overwrite=overwrite, data=data, device=on
    ) as run:
        _, record = train_model(config, entry, seed, run.path, data_dir, progress=True, device=on)
    console.print(json.dumps({k: v for k, v in record.items() if k != "energy"}, indent=1))
    console.print(f"run folder (checkpoint, sample grids): [bold]{run.path}[/]")


@ais_app.command("sample")
def sample(
    run: Annotated[Path, typer.Argument(help="run folder of `analogtorch ais train`")],
    n: Annotated[int, typer.Option(help="images to draw")] = 64,
    seed: Annotated[int, typer.Option(help="latent and noise seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="PNG path (default RUN/sample.png)")] = None,
) -> None:
    """Draw images from a trained generator and save them as a grid."""
    import math

    from .study import load_trained, sample_generator
    from .wgan import save_grid

    generator, spec = load_trained(run)
    gibbs = int((spec["entry"].get("options") or {}).get("gibbs_steps", 1000))
    images = sample_generator(generator, n, seed, gibbs)
    path = save_grid(images, out or run / "sample.png", nrow=math.ceil(math.sqrt(n)))
    console.print(f"{n} samples: [bold]{path}[/]")


def _require_ais(generator: object, spec: dict, run: Path, what: str) -> None:
    """Refuse, in one line, a run whose generator is not an AIS (an MLP or an RBM)."""
    from .system import AnalogInteractionSystem

    if not isinstance(generator, AnalogInteractionSystem):
        raise ValueError(f"{what}: {run} holds a {spec['entry']['kind']} generator, not an AIS")


@ais_app.command("fid")
def fid(
    run: Annotated[Path, typer.Argument(help="run folder of `analogtorch ais train`")],
    n_samples: Annotated[int, typer.Option(help="generated and test images compared")] = 5000,
    inception_weights: Annotated[
        Path | None,
        typer.Option(help="local pt_inception-2015-12-05 weights (needs torch-fidelity)"),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder")] = None,
    sampling_steps: Annotated[
        int | None,
        typer.Option(
            help="integration steps when sampling an AIS (default: as trained; steps past "
            "the trained horizon hold the last segment's controls)"
        ),
    ] = None,
) -> None:
    """FID, KID, precision and recall of a trained generator against the test set.

    The classifier extractor is trained and cached on first use. Writes RUN/fid.json, or
    RUN/fid-steps<N>.json with --sampling-steps N.
    """
    from .study import load_trained, score_model
    from .system import AnalogInteractionSystem

    generator, spec = load_trained(run)
    is_ais = isinstance(generator, AnalogInteractionSystem)
    record = "fid.json"
    if sampling_steps is not None:
        _require_ais(generator, spec, run, "--sampling-steps")
        generator.set_sampling_steps(sampling_steps)
        record = f"fid-steps{sampling_steps}.json"
    config = {**spec["config"], "fid": {"n_samples": n_samples}}
    _, scores = score_model(
        config,
        generator,
        spec["entry"],
        spec["seed"],
        data_dir,
        inception_weights=inception_weights,
        progress=True,
    )
    if is_ais:
        scores["sampling_steps"] = generator.n_steps
        scores["sampling_time_s"] = generator.duration_s
    write_json(run / record, scores)
    console.print(json.dumps(scores, indent=1))


@ais_app.command("dynamics")
def dynamics(
    runs: Annotated[list[Path], typer.Argument(help="run folders of AIS generators")],
    n: Annotated[int, typer.Option(help="trajectories sampled per run")] = 256,
    seed: Annotated[int, typer.Option(help="latent and noise seed")] = 0,
    tolerance: Annotated[
        float, typer.Option(help="a pixel within this of 0 or 1 counts as committed")
    ] = 0.05,
    out: Annotated[
        Path | None, typer.Option(help="PNG of all runs (default FIRST_RUN/dynamics.png)")
    ] = None,
) -> None:
    """Where the sampling time goes: share of committed pixels and the coupling vs local
    drift along the trajectories, per step. Writes RUN/dynamics.json for each run and one
    plot of them all."""
    from .study import load_trained
    from .trajectory import plot_profiles, profile_trajectory

    profiles = {}
    for run in runs:
        generator, spec = load_trained(run)
        _require_ais(generator, spec, run, "ais dynamics")
        profile = profile_trajectory(generator, n, seed, tolerance)
        record = {"n": n, "seed": seed, "tolerance": tolerance, **profile.to_dict()}
        write_json(run / "dynamics.json", record)
        label = f"{spec['entry']['label']} ({run.name})"
        profiles[label] = profile
        final = profile.committed[-1]
        console.print(f"{label}: {final:.0%} of pixels committed at the read-out")
    path = plot_profiles(profiles, out or runs[0] / "dynamics.png", "AIS sampling dynamics")
    console.print(f"plot: [bold]{path}[/]")


@ais_app.command("study")
def study(
    config: Annotated[Path, typer.Argument(help="study config (experiments/ais/*.yaml)")],
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder")] = None,
    backend: BackendOption = Backend.local,
    device: DeviceOption = "cpu",
) -> None:
    """Run or resume an AIS study; writes report.md, summary.json, grids and plots."""
    from ..runs import data_identity, open_run, resolve_data_dir
    from .study import load_study

    on = str(resolve_device(device))
    settings = load_study(config)
    data = data_identity(settings["dataset"], data_dir)
    data_dir = resolve_data_dir(settings["dataset"], data_dir)  # explicit, for every cell
    name = settings["name"]
    with open_run(
        "ais-study", name, settings, out=out, overwrite=overwrite, data=data, device=on
    ) as run:
        markdown = run_ais_study(settings, run.path, data_dir, backend.value, on)
    console.print(markdown, markup=False)
    console.print(f"report, tables and plots: [bold]{run.path}[/]")


def run_ais_study(
    settings: dict[str, Any],
    out_dir: Path,
    data_dir: Path | None,
    backend: str,
    device: str = "cpu",
) -> str:
    """Run and report a loaded AIS study config into ``out_dir`` (training on ``device``);
    returns the markdown."""
    from .study import real_data_scores, run_study
    from .study_report import write_report

    records = run_study(settings, out_dir, data_dir=data_dir, backend=backend, device=device)
    reference = real_data_scores(settings, out_dir, data_dir)
    return write_report(settings, records, out_dir, reference=reference)
