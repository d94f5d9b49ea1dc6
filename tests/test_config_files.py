"""Every configuration file goes through one safe loader and a typed schema: bad files and
bad values are one ``ValueError`` naming the file and the key, never a default run."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from analogtorch.cli import _study_runner, app
from analogtorch.config_files import load_yaml_mapping, shipped_configs
from analogtorch.train.robustness import complete_config, load_study


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- a\n- b\n", "must be a mapping.*got a list"),
        ("just a string", "must be a mapping.*got a str"),
        ("!!python/object/apply:os.system ['true']", "safe YAML only"),
        ("a: !!python/name:os.system\n", "safe YAML only"),
        ("a: [1, 2\n", "safe YAML only"),
        ("1: x\n", "keys must be names"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_one_clear_error(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_yaml_mapping(path, "study config")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_file_or_a_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_yaml_mapping(tmp_path / "nope.yaml", "study config")
    with pytest.raises(FileNotFoundError, match="a folder"):
        load_yaml_mapping(tmp_path, "study config")


def test_an_empty_study_file_never_runs_a_default_study(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_study(path)
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"n_train": 0}, "n_train"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"seeds": "0"}, "seeds"),
        ({"chip_seed": -1}, "chip_seed"),
        ({"kind": "robust"}, "kind"),
        ({"methods": []}, "methods"),
        ({"eval": {"chips": 0}}, "eval.chips"),
        ({"eval": {"bits": [1]}}, "eval.bits"),
        ({"eval": {"noise_scales": [float("inf")]}}, "eval.noise_scales"),
        ({"eval": {"noise_scales": [-0.5]}}, "eval.noise_scales"),
        ({"eval": {"times": [-1.0]}}, "eval.times"),
        ({"eval": {"shots": 3}}, "eval.shots"),
        ({"profile_changes": {"prog_noise_std": 2.0}}, "prog_noise_std"),
        ({"profile": "no-such-chip"}, "no-such-chip"),
        ({"train": {"epochs": -1}}, "train.epochs"),
        ({"train": {"epoch": 3}}, "epoch"),
        (
            {"methods": [{"method": "physics-informed", "options": {"schedule": "lineer"}}]},
            "schedule",
        ),
    ],
)
def test_each_bad_value_of_a_robustness_config_names_its_key(changes, key):
    with pytest.raises(ValueError, match=key):
        complete_config({"name": "x", **changes})


def test_a_complete_config_is_plain_yaml_data(tmp_path):
    config = complete_config({"name": "x", "eval": {"chips": 3}})
    assert config["eval"]["chips"] == 3 and config["eval"]["bits"] == [4]
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_every_shipped_study_config_passes_its_schema():
    """A shipped config that its own runner refuses would fail only when a user runs it."""
    configs = shipped_configs()
    assert len(configs) >= 15
    for path in configs.values():
        config, runner = _study_runner(path)
        assert config["name"] == path.stem and callable(runner)
