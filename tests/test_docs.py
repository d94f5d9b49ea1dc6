"""Every example in README.md and docs/*.md runs: the Python blocks of a page in one
namespace in order (with the sizes below made small), and every ``analogtorch`` command line
of a shell block parses against the real command line (options and values checked; nothing
is run). The pages stand alone: no path or link leads outside the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import typer

from analogtorch.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# What the tests shrink so that every example runs in seconds (the pages keep real sizes).
SMALL: dict[str, list[tuple[str, str]]] = {
    "README.md": [("n_chips=10", "n_chips=2")],
    "ais.md": [("steps=600", "steps=2"), ("torch.rand(512,", "torch.rand(64,")],
    "deq.md": [
        ("epochs=4", "epochs=1"),
        ("n_chips=5", "n_chips=1"),
        (
            "torch.rand(2000, 784), torch.randint(0, 10, (2000,))",
            "torch.rand(64, 784), torch.randint(0, 10, (64,))",
        ),
        (
            "torch.rand(500, 784), torch.randint(0, 10, (500,))",
            "torch.rand(32, 784), torch.randint(0, 10, (32,))",
        ),
        ("max_iter=40", "max_iter=5"),
    ],
    "hil.md": [("steps=300", "steps=2"), ("budget=100_000", "budget=5_000")],
}


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.M | re.S)


def _calibration_csv(folder: Path) -> None:
    """A measurement file like a user's (the calibration page reads ``chip.csv``)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from test_calibrate import write_measurement_csv

    write_measurement_csv(folder / "chip.csv", np.random.default_rng(0))


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "python")], ids=lambda p: p.name)
def test_the_python_examples_of_a_page_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if page.name == "calibration.md":
        _calibration_csv(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for index, code in enumerate(_blocks(page, "python")):
        for big, small in SMALL.get(page.name, []):
            code = code.replace(big, small)
        exec(compile(code, f"{page.name} python block {index + 1}", "exec"), namespace)


def _command_lines(page: Path) -> list[list[str]]:
    lines = []
    for block in _blocks(page, "bash"):
        for raw in block.splitlines():
            for part in raw.split("&&"):
                words = shlex.split(re.sub(r"\[[^\]]*\]", "", part), comments=True)  # [optional]
                while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before a command
                    words = words[1:]
                if words and words[0] == "analogtorch":
                    lines.append(words[1:])
    return lines


def _parse(args: list[str]) -> None:
    """Parse ``analogtorch ARGS`` down to the command, checking every option and value."""
    command = typer.main.get_command(app)
    context = command.make_context("analogtorch", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command"):  # a group: on to its subcommand
        name, command, rest = command.resolve_command(
            context, [*context._protected_args, *context.args]
        )
        context = command.make_context(name, rest, parent=context)


COMMANDS = [(page.name, line) for page in PAGES for line in _command_lines(page)]


@pytest.mark.parametrize(("page", "args"), COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_every_documented_command_line_parses(page, args):
    _parse(args)


def test_the_pages_do_not_lead_outside_the_repository():
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text, page.name
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
