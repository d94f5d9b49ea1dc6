"""Fuzzing the two places users type values: profile fields and command-line arguments.

Whatever is given, the outcome is a valid object or one clean error: a ``ProfileError``
for a profile; for the command line, exit status 2 and a single ``error: ...`` line on
standard error, never a traceback."""

from __future__ import annotations

import math
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analogtorch as at
from analogtorch import cli
from analogtorch.cli import _study_runner
from analogtorch.config_files import shipped_configs

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -1e-308, 0.0, -1.0]),
    st.text(max_size=12),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
FIELDS = st.sampled_from(sorted(at.HardwareProfile.model_fields))


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(FIELDS, VALUES, min_size=1, max_size=3))
def test_any_profile_fields_give_a_profile_or_a_profile_error(fields):
    try:
        profile = at.HardwareProfile(**fields)
    except at.ProfileError as err:
        assert str(err).startswith("invalid HardwareProfile") or "HardwareProfile" in str(err)
        return
    for name in ("adc_range", "prog_noise_std", "read_noise_std", "output_noise_std"):
        assert math.isfinite(getattr(profile, name))


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``analogtorch ARGV`` in this process: (exit status, standard error)."""
    old = sys.argv
    sys.argv = ["analogtorch", *argv]
    try:
        with pytest.raises(SystemExit) as done:
            cli.main()
    finally:
        sys.argv = old
    return done.value.code, capsys.readouterr().err


JUNK = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=16,
).filter(lambda s: not s.startswith("-"))


def _positive_int(text: str) -> bool:
    try:
        return int(text) >= 1
    except ValueError:
        return False


NUMBERS = st.one_of(
    st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e999", "abc", "", "3.5x"]),
    JUNK.filter(lambda s: not _positive_int(s)),  # never a valid count: nothing long runs
)

COMMANDS = st.one_of(
    st.tuples(st.just(["profile", "show"]), JUNK.map(lambda s: [f"no-such-{s}"])),
    st.tuples(st.just(["energy"]), JUNK.map(lambda s: [f"net-{s}"])),
    st.tuples(st.just(["energy", "mnist-mlp", "--profile"]), JUNK.map(lambda s: [f"x{s}"])),
    st.tuples(st.just(["study"]), JUNK.map(lambda s: [f"nope-{s}"])),
    st.tuples(st.just(["calibrate"]), JUNK.map(lambda s: [f"/nonexistent/{s}.csv"])),
    st.tuples(st.just(["hil"]), JUNK.map(lambda s: [f"/nonexistent/{s}.yaml"])),
    st.tuples(st.just(["ais", "sample"]), JUNK.map(lambda s: [f"/nonexistent/{s}"])),
    st.tuples(st.just(["deq", "train"]), JUNK.map(lambda s: [f"task-{s}"])),
    st.tuples(st.just(["demo", "--chips"]), NUMBERS.map(lambda s: [s])),
    st.tuples(st.just(["demo", "--seed"]), st.sampled_from(["x", "1.5", ""]).map(lambda s: [s])),
    st.tuples(st.just(["deq", "train", "linear", "--epochs"]), NUMBERS.map(lambda s: [s])),
    st.tuples(st.just(["study", "mnist-mlp", "--backend"]), JUNK.map(lambda s: [f"b{s}"])),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(command=COMMANDS)
def test_bad_command_lines_exit_2_with_one_error_line(command, capsys, tmp_path_factory):
    head, tail = command
    out = tmp_path_factory.mktemp("run")
    argv = [*head, *tail]
    if head[0] in ("study", "deq", "demo", "energy") and "--out" not in argv:
        argv += ["--out", str(out / "r")]
    status, err = _run_cli(argv, capsys)
    assert status == 2, (argv, status, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err


def _key_paths(data: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested config (mapping keys and list positions)."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return []
    paths = []
    for key, value in items:
        paths += [(*prefix, key), *_key_paths(value, (*prefix, key))]
    return paths


SHIPPED = sorted(shipped_configs().values())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_change_to_a_shipped_study_config_is_a_config_or_one_clean_error(data, tmp_path):
    """One key anywhere in a shipped config (any family) set to junk, or a junk key added:
    the runner's check gives a config or a ValueError / OSError (exit 2), never another
    exception."""
    path = data.draw(st.sampled_from(SHIPPED))
    config = yaml.safe_load(path.read_text())
    keys = data.draw(st.sampled_from([*_key_paths(config), ("junk_key",)]))
    *parents, last = keys
    node = config
    for key in parents:
        node = node[key]
    node[last] = data.draw(VALUES)
    target = tmp_path / path.parent.name / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config))
    try:
        _study_runner(target)
    except (ValueError, OSError) as err:
        assert str(err) and "Traceback" not in str(err)
