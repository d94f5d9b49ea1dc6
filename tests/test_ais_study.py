"""AIS studies end to end on tiny synthetic images, the scaling sweep and the `ais` CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from typer.testing import CliRunner

from analogtorch.ais import study as ais_study
from analogtorch.ais.scaling import BITS_PER_DEVICE, random_couplings, scaling_sweep
from analogtorch.ais.study import complete_config, load_trained, run_study, sample_generator
from analogtorch.ais.study_report import write_report
from analogtorch.cli import app
from analogtorch.energy.dynamics import estimate_dynamics
from analogtorch.hardware.profile import HardwareProfile

PCM = HardwareProfile.preset("pcm")


def test_random_couplings_have_the_density_and_levels_asked_for() -> None:
    j = random_couplings(60, 0.2, 4, seed=1)
    assert torch.equal(j, j.T) and torch.all(j.diagonal() == 0)
    density = int(torch.count_nonzero(j)) / (60 * 59)
    assert density == pytest.approx(0.2, abs=0.05)
    assert len(torch.unique(j[j != 0].abs())) <= 7  # magnitudes 1..7 of the 4-bit grid


def test_coupling_area_counts_present_devices_and_bit_slices() -> None:
    j = random_couplings(40, 0.5, 8, seed=0)
    c = PCM.energy
    present = int(torch.count_nonzero(j))
    for bits, per_device in ((8, None), (8, 2), (4, 2)):
        profile = PCM.replace(weight_bits=bits, energy={"bits_per_device": per_device})
        slices = 1 if per_device is None else math.ceil((bits - 1) / per_device)
        report = estimate_dynamics(j, profile, 1e-8)
        expected = 1e6 * present * slices * c.devices_per_weight * c.cell_area_f2
        expected *= c.feature_size_m**2
        assert report.area_by_part_mm2["cells"] == pytest.approx(expected)


def test_scaling_sweep_area_grows_linearly_with_density() -> None:
    rows = scaling_sweep(50, [0.1, 0.4], [4, 8], PCM, 1e-8, n_readout=25)
    for bits in (4, 8):
        low, high = (r for r in rows if r["bits"] == bits)
        ratio = high["coupling_area_mm2"] / low["coupling_area_mm2"]
        assert ratio == pytest.approx(high["couplings"] / low["couplings"])
        assert high["power_w"] > low["power_w"]
    slices = {b: math.ceil((b - 1) / BITS_PER_DEVICE) for b in (4, 8)}
    a4 = next(r for r in rows if r["bits"] == 4 and r["density"] < 0.2)
    a8 = next(r for r in rows if r["bits"] == 8 and r["density"] < 0.2)
    per_coupling = {b: r["coupling_area_mm2"] / r["couplings"] for b, r in ((4, a4), (8, a8))}
    assert per_coupling[8] / per_coupling[4] == pytest.approx(slices[8] / slices[4])


class _FlatFeatures:
    name = "flat-pixels (test)"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def _blobs(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.zeros(n, 1, 4, 4)
    base[:, :, 1:3, 1:3] = 0.8
    return (base + 0.1 * torch.rand(n, 1, 4, 4, generator=gen)).clamp(0, 1)


@pytest.fixture
def tiny_data(monkeypatch):
    monkeypatch.setattr(
        ais_study,
        "study_images",
        lambda config, split, data_dir=None: _blobs(64, int(split == "test")),
    )
    monkeypatch.setattr(ais_study, "classifier_extractor", lambda *a, **k: _FlatFeatures())


TINY = {
    "name": "tiny-ais",
    "image_size": 4,
    "wgan": {
        "steps": 3,
        "batch_size": 8,
        "n_critic": 1,
        "sample_every": 2,
        "checkpoint_every": 2,
        "log_every": 1,
    },
    "critic": {"width": 4},
    "fid": {"n_samples": 40},
    "models": [
        {
            "label": "AIS",
            "kind": "oscillator",
            "options": {
                "n_hidden": 4,
                "segments": 2,
                "steps_per_segment": 2,
                "dt": 0.25,
                "mask": "local",
                "bits": 4,
            },
        },
        {"label": "MLP", "kind": "mlp", "latent_dim": 4},
        {"label": "RBM", "kind": "rbm", "options": {"n_hidden": 4, "epochs": 1, "gibbs_steps": 5}},
    ],
}


def test_ais_study_runs_resumes_and_reports(tmp_path, tiny_data) -> None:
    config = complete_config(dict(TINY))
    records = run_study(config, tmp_path, show_progress=False)
    assert [r["key"] for r in records] == ["AIS-seed0", "MLP-seed0", "RBM-seed0"]
    ais, mlp, _ = records
    assert abs(mlp["parameters"] - ais["parameters"]) <= 0.05 * ais["parameters"]
    assert ais["energy"]["total"]["energy_j"] > 0 and "energy" not in mlp
    assert all(r["extractor"] == "flat-pixels (test)" and r["fid"] >= 0 for r in records)
    stamp = (tmp_path / "cells" / "AIS-seed0.json").stat().st_mtime_ns
    again = run_study(config, tmp_path, show_progress=False)
    assert (tmp_path / "cells" / "AIS-seed0.json").stat().st_mtime_ns == stamp
    assert [r["fid"] for r in again] == [r["fid"] for r in records]
    markdown = write_report(config, again, tmp_path)
    assert "| AIS | " in markdown and "FID(RBM) / FID(AIS)" in markdown
    assert (tmp_path / "scaling.png").exists() and (tmp_path / "samples" / "RBM-seed0.png").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["model"] for row in summary] == ["AIS", "MLP", "RBM"]


def test_trained_generators_reload_and_sample_reproducibly(tmp_path, tiny_data) -> None:
    config = complete_config(dict(TINY))
    run_study(config, tmp_path, show_progress=False)
    for key in ("AIS-seed0", "MLP-seed0", "RBM-seed0"):
        generator, _ = load_trained(tmp_path / "runs" / key)
        a = sample_generator(generator, 6, seed=3, gibbs_steps=5)
        b = sample_generator(generator, 6, seed=3, gibbs_steps=5)
        assert a.shape == (6, 1, 4, 4) and torch.equal(a, b)
        assert a.min() >= 0 and a.max() <= 1
    result = CliRunner().invoke(
        app, ["ais", "sample", str(tmp_path / "runs" / "AIS-seed0"), "--n", "4"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "AIS-seed0" / "sample.png").exists()
    ais_run = tmp_path / "runs" / "AIS-seed0"
    fid_args = ["ais", "fid", "--n-samples", "40", "--sampling-steps", "8"]
    result = CliRunner().invoke(app, [*fid_args, str(ais_run)])
    assert result.exit_code == 0, result.output
    probe = json.loads((ais_run / "fid-steps8.json").read_text())
    assert probe["sampling_steps"] == 8 and probe["sampling_time_s"] == pytest.approx(8 * 0.25e-9)
    assert not (ais_run / "fid.json").exists()  # the as-trained score is not overwritten
    result = CliRunner().invoke(app, [*fid_args, str(tmp_path / "runs" / "MLP-seed0")])
    assert isinstance(result.exception, ValueError) and "not an AIS" in str(result.exception)
    result = CliRunner().invoke(app, ["ais", "dynamics", str(ais_run), "--n", "8"])
    assert result.exit_code == 0, result.output
    dynamics = json.loads((ais_run / "dynamics.json").read_text())
    assert len(dynamics["committed"]) == 4 + 1 and (ais_run / "dynamics.png").exists()
    result = CliRunner().invoke(app, ["ais", "dynamics", str(tmp_path / "runs" / "MLP-seed0")])
    assert isinstance(result.exception, ValueError) and "not an AIS" in str(result.exception)


def test_ais_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="models: missing"):
        complete_config({"name": "x"})
    with pytest.raises(ValueError, match="models=\\[\\]: List should have at least 1 item"):
        complete_config({"name": "x", "models": []})
    with pytest.raises(
        ValueError, match=re.escape("models.0.kind='vae': Input should be 'oscillator'")
    ):
        complete_config({"name": "x", "models": [{"kind": "vae"}]})
    with pytest.raises(ValueError, match="repeat"):
        complete_config({"name": "x", "models": [{"kind": "mlp"}, {"kind": "mlp"}]})
    with pytest.raises(ValueError, match="an mlp entry is sized to an AIS entry"):
        complete_config({"name": "x", "models": [{"kind": "mlp"}]})
    with pytest.raises(ValueError, match="match='nope': name an AIS entry"):
        complete_config(
            {"name": "x", "models": [{"kind": "ising"}, {"kind": "mlp", "match": "nope"}]}
        )
    with pytest.raises(ValueError, match=r"model 'ising': options: .*n_hiden"):
        complete_config({"name": "x", "models": [{"kind": "ising", "options": {"n_hiden": 3}}]})
    with pytest.raises(ValueError, match=r"unknown RBM option\(s\) \['epoch'\]"):
        complete_config({"name": "x", "models": [{"kind": "rbm", "options": {"epoch": 3}}]})
    with pytest.raises(ValueError, match=re.escape("wgan.steps=0")):
        complete_config({"name": "x", "wgan": {"steps": 0}, "models": [{"kind": "rbm"}]})
    with pytest.raises(ValueError, match=re.escape("wgan.stepz=3: unknown key")):
        complete_config({"name": "x", "wgan": {"stepz": 3}, "models": [{"kind": "rbm"}]})
    with pytest.raises(ValueError, match=re.escape("wgan.seed: the study's seeds")):
        complete_config({"name": "x", "wgan": {"seed": 3}, "models": [{"kind": "rbm"}]})
    with pytest.raises(ValueError, match=re.escape("fid.n_samples=1")):
        complete_config({"name": "x", "fid": {"n_samples": 1}, "models": [{"kind": "rbm"}]})
    with pytest.raises(
        ValueError, match=re.escape("critic.widht=3: unknown key; known keys: width, n_downsample")
    ):
        complete_config({"name": "x", "critic": {"widht": 3}, "models": [{"kind": "rbm"}]})
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        load_trained("/nonexistent-run")


def test_a_model_entry_may_choose_its_own_seeds(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(
        ais_study, "run_model", lambda config, entry, seed, out, data, device: {"x": 1}
    )
    config = complete_config(
        {"name": "s", "seeds": [0], "models": [{"kind": "ising"}, {"kind": "rbm", "seeds": [0, 2]}]}
    )
    records = run_study(config, tmp_path, show_progress=False)
    assert [r["key"] for r in records] == ["ising-seed0", "rbm-seed0", "rbm-seed2"]
    assert "seeds" not in records[1]["model"]  # cells of seed 0 stay valid when seeds change


def test_a_model_entry_may_change_the_wgan_settings(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match=re.escape("models.0.wgan: invalid WGAN settings")):
        complete_config({"name": "x", "models": [{"kind": "ising", "wgan": {"lr_g": -1}}]})
    with pytest.raises(ValueError, match=re.escape("models.0.wgan.seed: the study's seeds")):
        complete_config({"name": "x", "models": [{"kind": "ising", "wgan": {"seed": 1}}]})
    with pytest.raises(
        ValueError, match=re.escape("models.0.wgan: the RBM is not trained as a WGAN")
    ):
        complete_config({"name": "x", "models": [{"kind": "rbm", "wgan": {"lr_g": 1e-3}}]})
    config = complete_config(
        {
            "name": "x",
            "wgan": {"steps": 7, "lr_g": 5e-4},
            "models": [{"kind": "ising", "wgan": {"lr_g": 2e-4}}, {"kind": "mlp"}],
        }
    )
    assert "wgan" not in config["models"][1]  # unset: older configs keep their fingerprints
    seen = []

    def capture(generator, critic, train, wgan, run_dir, progress=False):
        seen.append(wgan)
        raise StopIteration

    monkeypatch.setattr(ais_study, "study_images", lambda *a, **k: torch.rand(8, 1, 8, 8))
    monkeypatch.setattr(ais_study, "train_wgan", capture)
    for entry in config["models"]:
        with pytest.raises(StopIteration):
            ais_study.train_model(config, entry, 0, tmp_path / entry["label"], None)
    assert [(w.lr_g, w.steps) for w in seen] == [(2e-4, 7), (5e-4, 7)]


def test_the_report_shows_the_metrics_floor_of_real_training_images(
    tmp_path, tiny_data, monkeypatch
):
    """Real training images against the test images: near zero (same distribution), far
    below an untrained generator, computed once and kept."""
    config = complete_config(dict(TINY))
    records = run_study(config, tmp_path, show_progress=False)
    floor = ais_study.real_data_scores(config, tmp_path, None)
    assert floor["n_real"] == floor["n_fake"] == 40 and floor["extractor"] == "flat-pixels (test)"
    assert 0 <= floor["fid"] < 0.1 * min(r["fid"] for r in records)
    markdown = write_report(config, records, tmp_path, reference=floor)
    row = next(line for line in markdown.splitlines() if line.startswith("| real training"))
    assert f"| {floor['fid']:.1f} |" in row
    monkeypatch.setattr(ais_study, "study_images", None)  # read from reference.json now
    assert ais_study.real_data_scores(config, tmp_path, None) == floor


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_ais_study_on_cuda_trains_there_and_scores_like_the_cpu_study(
    tmp_path, tiny_data
) -> None:
    config = complete_config({**TINY, "models": TINY["models"][:2]})  # an RBM stays on the CPU
    cpu = run_study(config, tmp_path / "cpu", show_progress=False)
    gpu = run_study(config, tmp_path / "gpu", show_progress=False, device="cuda")
    state = torch.load(tmp_path / "gpu" / "runs" / "AIS-seed0" / "checkpoint.pt", weights_only=True)
    assert next(iter(state["generator"].values())).is_cuda
    for a, b in zip(cpu, gpu, strict=True):  # 3 steps from the same start: close, not equal
        assert b["fid"] == pytest.approx(a["fid"], rel=0.2)
