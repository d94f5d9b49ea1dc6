"""``analogtorch deq ...``: train a hybrid DEQ on a task, run a DEQ study, list the tasks."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_options import Backend, BackendOption, OutOption, OverwriteOption

deq_app = typer.Typer(help="Hybrid analog–digital deep equilibrium models.", no_args_is_help=True)
console = Console()


@deq_app.command("tasks")
def tasks() -> None:
    """List the tasks a DEQ can be trained on."""
    from ..tasks import TASKS

    table = Table(title="DEQ tasks (analogtorch.tasks)")
    table.add_column("name")
    table.add_column("what")
    for name, make in TASKS.items():
        builder = make.func if isinstance(make, functools.partial) else make  # image tasks
        doc = (inspect.getdoc(builder) or "").splitlines()
        table.add_row(name, doc[0].replace("``", "") if doc else "")  # plain text
    console.print(table)


@deq_app.command("train")
def train(
    task: Annotated[str, typer.Argument(help="task name (see `analogtorch deq tasks`)")],
    profile: Annotated[str, typer.Option(help="preset name or YAML file")] = "pcm",
    bits: Annotated[int | None, typer.Option(help="weight/DAC/ADC bits (default: profile)")] = 8,
    noise: Annotated[
        float | None, typer.Option(help="weight noise σ / g_max (default: profile)")
    ] = None,
    kind: Annotated[str, typer.Option(help="core: plain, pi (PI-DEQ), cc (CC-DEQ)")] = "plain",
    physics: Annotated[
        str | None, typer.Option(help="PI-DEQ physics term: heat, burgers, linear (default: task)")
    ] = None,
    width: Annotated[int, typer.Option(help="state size of the analog core")] = 128,
    epochs: Annotated[int, typer.Option(help="training epochs (curriculum over them)")] = 3,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 2e-3,
    n_train: Annotated[int | None, typer.Option(help="training samples (default: task's)")] = None,
    n_test: Annotated[int | None, typer.Option(help="test samples (default: task's)")] = None,
    chips: Annotated[int, typer.Option(help="programmed chips to evaluate on")] = 5,
    seed: Annotated[int, typer.Option(help="seed of data, weights and noise")] = 0,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder for image tasks")] = None,
) -> None:
    """Train a physics-aware hybrid DEQ on TASK and score it on chips and as a relaxation.

    Curriculum digital, noise, precision, full; then programmed chips and the analog
    relaxation. An interrupted run resumes in its run folder.
    """
    from ..runs import data_identity, open_run
    from .study import complete_config, run_deq_study

    setting = {"name": "cli", "bits": bits, "noise": noise}
    config = {
        "name": f"deq-{task}",
        "kind": "classification",
        "task": task,
        "n_train": n_train,
        "n_test": n_test,
        "profile": profile,
        "profile_changes": {},
        "model": {"width": width, "kind": kind, "physics": physics},
        "train": {"epochs": epochs, "lr": lr, "batch_size": 128},
        "settings": [setting],
        "arms": ["physics-aware"],
        "eval": {"chips": chips, "time_s": 3600.0},
        "seeds": [seed],
    }
    config = complete_config(config)
    data = data_identity(task, data_dir)
    with open_run("deq-train", task, config, out=out, overwrite=overwrite, data=data) as run:
        markdown = run_deq_study(config, run.path, data_dir=data_dir, show_progress=True)
    console.print(markdown, markup=False)
    console.print(f"report, record and plot: [bold]{run.path}[/]")


@deq_app.command("study")
def study(
    config: Annotated[Path, typer.Argument(help="study config (experiments/deq/*.yaml)")],
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder for image tasks")] = None,
    backend: BackendOption = Backend.local,
) -> None:
    """Run or resume a DEQ study (finished cells are kept)."""
    from ..runs import config_datasets, data_identity, open_run, resolve_data_dir
    from .study import load_study, run_deq_study

    settings = load_study(config)
    data = data_identity(config_datasets(settings), data_dir)
    data_dir = resolve_data_dir(config_datasets(settings), data_dir)  # explicit, every cell
    name = settings["name"]
    with open_run("deq-study", name, settings, out=out, overwrite=overwrite, data=data) as run:
        markdown = run_deq_study(
            settings, run.path, data_dir=data_dir, backend=backend.value, show_progress=True
        )
    console.print(markdown, markup=False)
    console.print(f"report, record and plot: [bold]{run.path}[/]")
