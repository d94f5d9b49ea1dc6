"""Exporting a study cell's trained model (`analogtorch export`) as one shippable file."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_data import write_idx_dataset
from typer.testing import CliRunner

import analogtorch as at
from analogtorch.cli import app
from analogtorch.data import load_dataset
from analogtorch.studies.cell_export import export_cell_model
from analogtorch.train import robustness
from analogtorch.train.robustness import cell_checkpoint, complete_config

CONFIG = {
    "name": "export-tiny",
    "dataset": "mnist",
    "model": "mnist-mlp",
    "n_train": None,
    "n_test": None,
    "train": {"epochs": 1, "finetune_epochs": 2, "batch_size": 4},
    "methods": ["fp32", "physics-informed", "qat"],
    "seeds": [0],
    "eval": {"chips": 1, "bits": [4], "noise_scales": [0.0], "times": [1.0]},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished tiny MNIST study, and the models its chip evaluation scored, by label."""
    root = tmp_path_factory.mktemp("export")
    write_idx_dataset(root / "data" / "mnist", seed=0)
    (root / "export-tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    config = complete_config(dict(CONFIG))
    scored = {}
    real = robustness.evaluate

    def spy(model, loader, *args, label="", **kwargs):
        scored[label] = model
        return real(model, loader, *args, label=label, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(robustness, "evaluate", spy)
        args = ["--quiet", "study", str(root / "export-tiny.yaml"), "--out", str(root / "run")]
        done = CliRunner().invoke(app, [*args, "--data-dir", str(root / "data")])
    assert done.exit_code == 0, done.output
    return config, root, scored


@pytest.mark.parametrize("label", ["physics-informed", "qat", "fp32"])
def test_the_exported_file_is_the_scored_model_taking_images_in_0_1(study, label):
    config, root, scored = study
    path = root / f"{label}.pt"
    export_cell_model(config, root / "run", label, 0, path, data_dir=root / "data")
    loaded = at.load(path)
    raw = load_dataset("mnist", "test", data_dir=root / "data", download=False).images
    train = load_dataset("mnist", "train", data_dir=root / "data", download=False).images
    mean, std = train.mean(), train.std()  # the task's own normalisation, computed here
    with torch.no_grad():
        got = loaded(raw)
        want = scored[label]((raw - mean) / std)  # as the study scored it (ideal read-out)
    if label == "physics-informed":
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:  # a digital model, converted with the study's profile for shipping: its weights
        own = loaded.state_dict()
        for name, value in scored[label].state_dict().items():
            torch.testing.assert_close(own[f"net.{name}"], value, rtol=0, atol=0)
        assert got.shape == want.shape and torch.isfinite(got).all()
    assert at.load(path) is not None and path.stat().st_size > 1000


def test_a_cell_still_training_or_unknown_is_refused(study, tmp_path):
    config, root, _ = study
    method = {"label": "qat", "method": "qat", "options": {}}
    from analogtorch.train.methods import MethodSpec

    spec = MethodSpec.parse(method)
    params = {"label": spec.label, "method": spec.method, "options": spec.options}
    checkpoint = cell_checkpoint(config, params, 0, root / "run")
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "steps_done": 1}, checkpoint)
    try:
        with pytest.raises(ValueError, match="still training"):
            export_cell_model(
                config, root / "run", "qat", 0, tmp_path / "x.pt", data_dir=root / "data"
            )
    finally:
        torch.save(state, checkpoint)
    with pytest.raises(ValueError, match=r"no cell method='nope' seed=0: methods \['fp32'"):
        export_cell_model(
            config, root / "run", "nope", 0, tmp_path / "x.pt", data_dir=root / "data"
        )
    assert not (tmp_path / "x.pt").exists()


def test_export_command_writes_the_file_and_refuses_another_studys_folder(study, tmp_path):
    _, root, _ = study
    yaml_path = tmp_path / "export-tiny.yaml"
    yaml_path.write_text(yaml.safe_dump(CONFIG))
    args = ["export", str(yaml_path), str(tmp_path / "m.pt"), "--run", str(root / "run")]
    args += ["--method", "physics-informed", "--data-dir", str(root / "data")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "m.pt").exists()
    other = dict(CONFIG) | {"seeds": [0, 1]}
    yaml_path.write_text(yaml.safe_dump(other))
    done = CliRunner().invoke(app, args)
    assert "holds another run (config keys seeds differ)" in str(done.exception)
