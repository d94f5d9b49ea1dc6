"""The `analogtorch` command line: help, presets, profile show, one-line user errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from analogtorch import HardwareProfile
from analogtorch.cli import app
from analogtorch.hardware import preset_names

runner = CliRunner()
# Rich wraps console output at the terminal width; pin a typical one.
NARROW_TERMINAL = {"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point ``main()`` in a fresh interpreter."""
    argv = ["analogtorch", *args]
    code = f"import sys; from analogtorch.cli import main; sys.argv = {argv!r}; main()"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **NARROW_TERMINAL},
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["demo"],
        ["presets"],
        ["profile"],
        ["profile", "show"],
        ["energy"],
        ["calibrate"],
        ["hil"],
    ],
    ids=["app", "demo", "presets", "profile", "profile-show", "energy", "calibrate", "hil"],
)
def test_every_command_has_help(args):
    result = runner.invoke(app, [*args, "--help"], env=NARROW_TERMINAL)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "--help" in result.output


def test_presets_lists_every_preset_name():
    result = runner.invoke(app, ["presets"], env={**NARROW_TERMINAL, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    names = preset_names()
    assert {"ideal", "pcm", "rram", "sram-cim", "seed-4bit-10pct"} <= set(names)
    for name in names:
        assert name in result.output


@pytest.mark.parametrize("name", preset_names())
def test_profile_show_prints_yaml_that_reads_back_equal(name, tmp_path):
    result = runner.invoke(app, ["profile", "show", name], env=NARROW_TERMINAL)
    assert result.exit_code == 0, result.output
    path = tmp_path / f"{name}.yaml"
    path.write_text(result.output)
    assert HardwareProfile.from_yaml(path) == HardwareProfile.preset(name)


def test_profile_show_accepts_a_yaml_file(tmp_path):
    profile = HardwareProfile.preset("rram").replace(name="mine", adc_bits=6)
    path = tmp_path / "mine.yaml"
    profile.to_yaml(path)
    result = runner.invoke(app, ["profile", "show", str(path)], env=NARROW_TERMINAL)
    assert result.exit_code == 0, result.output
    assert "name: mine" in result.output
    assert "adc_bits: 6" in result.output


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_unknown_preset_is_a_one_line_error():
    assert_one_line_error(run_main("profile", "show", "no-such-preset"), "no-such-preset", "pcm")


def test_yaml_file_with_an_invalid_field_value_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nadc_bits: 40\n")
    assert_one_line_error(run_main("profile", "show", str(path)), "adc_bits", "40")


def test_missing_yaml_path_is_a_one_line_error(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_one_line_error(run_main("profile", "show", str(missing)), "missing.yaml")


def test_bad_option_value_prints_one_error_line_and_exits_2():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from analogtorch.cli import main; import sys; "
            "sys.argv=['analogtorch', 'demo', '--chips', '0']; main()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--chips" in lines[0]
    assert "Traceback" not in result.stderr


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("analogtorch ")


def test_study_list_and_names_work_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no experiments/ here: the shipped configs are package data
    listed = CliRunner().invoke(app, ["study", "--list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for name in ("mnist-mlp", "cifar10-resnet20x2", "physics-tasks", "networks"):
        assert name in listed.output
    from analogtorch.config_files import find_config

    assert find_config("mnist-mlp").name == "mnist-mlp.yaml"


def test_ctrl_c_says_in_one_line_that_the_run_resumes(monkeypatch, capsys):
    """Typer turns Ctrl-C into a silent exit 130; the entry point says what happened."""
    import typer

    import analogtorch.cli as cli

    interrupted = typer.Typer()

    @interrupted.command()
    def study() -> None:
        raise KeyboardInterrupt  # Ctrl-C in the middle of a run

    @interrupted.command()
    def other() -> None: ...

    monkeypatch.setattr(cli, "app", interrupted)
    monkeypatch.setattr(sys, "argv", ["analogtorch", "study"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted")
