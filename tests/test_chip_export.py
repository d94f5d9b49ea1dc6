"""`Chip.export` / `Chip.from_conductances`: a chip's conductances as files, a chip built from
measured conductances, and `evaluate` on given chips."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import analogtorch as at

# PCM noise, drift and converters, with small tiles so that layers span several tiles.
PCM = at.HardwareProfile.preset("pcm").replace(tile_rows=18)
# No converters, noise, drift or circuit effects: the array computes scale * (G+ - G-) x.
IDEAL = at.HardwareProfile(tile_rows=2, drift_t0_seconds=20.0)
G_MAX = IDEAL.g_max_siemens


def _conv_net(profile: at.HardwareProfile) -> nn.Module:
    """Conv (27 rows: 2 tiles of 2 channels x 9 taps) and linear (64 rows: 4 tiles of 16)."""
    torch.manual_seed(0)  # parameter initialisation only
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    model = at.convert(model, profile).eval()
    with torch.no_grad():
        model(_input())  # sets the DAC ranges once, before any chip reads the model
    return model


def _input(seed: int = 0) -> torch.Tensor:
    return torch.randn((6, 3, 6, 6), generator=torch.Generator().manual_seed(seed))


def _read(chip: at.Chip, model: nn.Module, x: torch.Tensor, time_s: float) -> torch.Tensor:
    with chip.deploy(model, time_s=time_s), torch.no_grad():
        return model(x)


def _arrays(directory: Path) -> dict[str, np.ndarray]:
    with np.load(directory / "conductances.npz") as npz:
        return {key: npz[key] for key in npz.files}


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _write_set(directory: Path, arrays: dict[str, np.ndarray], manifest: dict) -> Path:
    """A conductance set written without the library (the manifest's checksum updated)."""
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (directory / "conductances.npz").write_bytes(buffer.getvalue())
    if manifest.get("arrays_sha256") is not None:
        manifest = {**manifest, "arrays_sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def exported(tmp_path: Path) -> tuple[nn.Module, at.Chip, Path]:
    model, chip = _conv_net(PCM), at.Chip(PCM, seed=7)
    return model, chip, chip.export(model, tmp_path / "chip7")


@pytest.mark.parametrize("time_s", [0.0, 3600.0])
def test_imported_chip_reproduces_the_exported_chip_exactly(exported, time_s):
    model, chip, directory = exported
    x = _input(seed=1)
    expected = _read(chip, model, x, time_s)
    got = _read(at.Chip.from_conductances(directory), model, x, time_s)
    assert torch.equal(got, expected)


def test_imported_chip_reads_its_conductances_not_the_model_weights(exported):
    model, chip, directory = exported
    x = _input(seed=1)
    expected = _read(chip, model, x, 3600.0)
    imported = at.Chip.from_conductances(directory)
    with torch.no_grad():
        for layer in at.nn.analog_layers(model).values():
            layer.weight.zero_()
    assert torch.equal(_read(imported, model, x, 3600.0), expected)


def test_reexporting_an_imported_chip_writes_the_same_arrays(exported, tmp_path):
    model, _, directory = exported
    again = at.Chip.from_conductances(directory).export(model, tmp_path / "again")
    first, second = _arrays(directory), _arrays(again)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[key], second[key]) for key in first)


def test_exported_conductances_store_the_weights_in_siemens_tile_by_tile(tmp_path):
    profile = at.HardwareProfile(tile_rows=18)  # noise-free: the pairs hold W exactly
    model = _conv_net(profile)
    directory = at.Chip(profile, seed=0).export(model, tmp_path / "set")
    arrays, manifest = _arrays(directory), _manifest(directory)
    assert manifest["units"] == "siemens"
    for name, layer in at.nn.analog_layers(model).items():
        entry = manifest["layers"][name]
        tiling = entry["tiling"]
        assert entry["weight_shape"] == list(layer.weight.shape)
        tiles = range(tiling["n_tiles"])
        g_plus = np.concatenate([arrays[f"{name}/tile{k}/g_plus"] for k in tiles], axis=1)
        g_minus = np.concatenate([arrays[f"{name}/tile{k}/g_minus"] for k in tiles], axis=1)
        n_rows, padded = tiling["n_rows"], tiling["n_tiles"] * tiling["rows_per_tile"]
        assert g_plus.shape == (layer.weight.shape[0], padded)
        assert g_plus.min() >= 0 and g_plus.max() <= G_MAX * (1 + 1e-6)
        assert np.all(g_minus[:, n_rows:] == 0)  # unused rows of the last tile
        stored = arrays[f"{name}/scale"][:, None] * (g_plus - g_minus)[:, :n_rows]
        weight = layer.weight.detach().double().reshape(layer.weight.shape[0], -1).numpy()
        np.testing.assert_allclose(stored, weight, rtol=1e-6, atol=1e-7)


def test_manifest_names_profile_seed_layers_and_tiling(exported):
    _, _, directory = exported
    manifest = _manifest(directory)
    assert manifest["format"] == "analogtorch-conductances/1"
    assert manifest["chip_seed"] == 7
    assert at.HardwareProfile(**manifest["profile"]) == PCM
    assert list(manifest["layers"]) == ["0", "3"]
    assert manifest["layers"]["0"] == {
        "weight_shape": [4, 3, 3, 3],
        "tiling": {"n_rows": 27, "n_tiles": 2, "rows_per_tile": 18},
    }
    assert manifest["layers"]["3"]["tiling"] == {"n_rows": 64, "n_tiles": 4, "rows_per_tile": 16}
    digest = hashlib.sha256((directory / "conductances.npz").read_bytes()).hexdigest()
    assert manifest["arrays_sha256"] == digest


def test_export_refuses_a_model_without_analog_layers(tmp_path):
    with pytest.raises(ValueError, match="no analog layers"):
        at.Chip(PCM, seed=0).export(nn.Sequential(nn.Linear(3, 2)), tmp_path / "set")


# -- hand-written conductances --------------------------------------------------------------

# Layer "0" of a Linear(4 -> 3, no bias), two tiles of two inputs each.
G_PLUS = G_MAX * np.array([[1.0, 0.0, 0.0, 0.3], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.25, 0.0]])
G_MINUS = G_MAX * np.array([[0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.7], [0.1, 0.0, 0.0, 0.0]])
SCALE = np.array([2.0, 1.0, 4.0]) / G_MAX  # weight units per siemens
NU_PLUS, NU_MINUS = 0.05, 0.1


def _hand_set(
    directory: Path,
    units: str = "siemens",
    drift_exponents: bool = True,
    profile: at.HardwareProfile = IDEAL,
) -> Path:
    unit = 1.0 if units == "siemens" else G_MAX
    arrays = {"0/scale": SCALE * unit}
    for k in range(2):
        columns = slice(2 * k, 2 * k + 2)
        arrays[f"0/tile{k}/g_plus"] = G_PLUS[:, columns] / unit
        arrays[f"0/tile{k}/g_minus"] = G_MINUS[:, columns] / unit
        if drift_exponents:
            arrays[f"0/tile{k}/nu_plus"] = np.full((3, 2), NU_PLUS)
            arrays[f"0/tile{k}/nu_minus"] = np.full((3, 2), NU_MINUS)
    manifest = {
        "format": "analogtorch-conductances/1",
        "profile": profile.model_dump(mode="json"),
        "chip_seed": 0,
        "units": units,
        "drift_exponents": drift_exponents,
        "layers": {
            "0": {"weight_shape": [3, 4], "tiling": {"n_rows": 4, "n_tiles": 2, "rows_per_tile": 2}}
        },
    }
    return _write_set(directory, arrays, manifest)


def _linear_model(profile: at.HardwareProfile = IDEAL) -> nn.Module:
    return at.convert(nn.Sequential(nn.Linear(4, 3, bias=False)), profile).eval()


def _analytic(x: torch.Tensor, time_s: float) -> np.ndarray:
    """``y = s (G+ d+ - G- d-) x`` with drift ``d = (max(t, t0) / t0)^(-nu)``."""
    ratio = max(time_s, 20.0) / 20.0
    conductance = G_PLUS * ratio**-NU_PLUS - G_MINUS * ratio**-NU_MINUS
    return x.double().numpy() @ (SCALE[:, None] * conductance).T


@pytest.mark.parametrize("units", ["siemens", "g_max"])
@pytest.mark.parametrize("time_s", [0.0, 3600.0])
def test_hand_written_conductances_give_the_analytic_output(tmp_path, units, time_s):
    chip = at.Chip.from_conductances(_hand_set(tmp_path / "set", units))
    x = torch.randn((5, 4), generator=torch.Generator().manual_seed(3))
    got = _read(chip, _linear_model(), x, time_s)
    np.testing.assert_allclose(got.double().numpy(), _analytic(x, time_s), rtol=1e-5, atol=1e-6)


def test_drift_exponents_missing_from_the_file_are_drawn_from_the_profile(tmp_path):
    # nu ~ N(0.05, 0): every device drifts with nu = 0.05 exactly.
    profile = IDEAL.replace(drift_nu_mean=NU_PLUS)
    directory = _hand_set(tmp_path / "set", drift_exponents=False, profile=profile)
    chip = at.Chip.from_conductances(directory)
    x = torch.randn((5, 4), generator=torch.Generator().manual_seed(3))
    got = _read(chip, _linear_model(profile), x, 3600.0)
    ratio = 3600.0 / 20.0
    expected = x.double().numpy() @ (SCALE[:, None] * (G_PLUS - G_MINUS) * ratio**-NU_PLUS).T
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-6)


# -- refused files and models ---------------------------------------------------------------


def _negative(arrays):
    arrays["0/tile1/g_minus"][2, 1] = -1e-7


def _nan(arrays):
    arrays["0/tile0/g_plus"][0, 0] = np.nan


def _wrong_shape(arrays):
    arrays["0/tile1/g_plus"] = arrays["0/tile1/g_plus"][:, :1]


def _missing_tile(arrays):
    del arrays["0/tile1/g_plus"]


def _extra_tile(arrays):
    arrays["0/tile2/g_plus"] = arrays["0/tile1/g_plus"]


def _zero_scale(arrays):
    arrays["0/scale"][1] = 0.0


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_negative, r"'0/tile1/g_minus'.*negative"),
        (_nan, r"'0/tile0/g_plus'.*non-finite"),
        (_wrong_shape, r"'0/tile1/g_plus'.*shape \(3, 1\).*\(3, 2\)"),
        (_missing_tile, r"missing.*'0/tile1/g_plus'"),
        (_extra_tile, r"'0/tile2/g_plus'.*not in the manifest"),
        (_zero_scale, r"'0/scale'.*> 0"),
    ],
)
def test_tampered_arrays_are_refused_naming_the_entry(tmp_path, tamper, message):
    directory = _hand_set(tmp_path / "set")
    arrays = _arrays(directory)
    tamper(arrays)
    _write_set(directory, arrays, _manifest(directory))
    with pytest.raises(ValueError, match=message):
        at.Chip.from_conductances(directory)


def _bad_tiling(manifest):
    manifest["layers"]["0"]["tiling"]["n_rows"] = 5


def _bad_format(manifest):
    manifest["format"] = "analogtorch-conductances/0"


def _bad_units(manifest):
    manifest["units"] = "microsiemens"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [(_bad_tiling, "tiling.n_rows=5"), (_bad_format, "format"), (_bad_units, "units")],
)
def test_inconsistent_manifests_are_refused_naming_the_key(tmp_path, tamper, message):
    directory = _hand_set(tmp_path / "set")
    manifest = _manifest(directory)
    tamper(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message):
        at.Chip.from_conductances(directory)


def test_arrays_from_another_write_fail_the_manifest_checksum(exported):
    _, _, directory = exported
    arrays = _arrays(directory)
    arrays["0/tile0/g_plus"] = arrays["0/tile0/g_plus"] * 0.5
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (directory / "conductances.npz").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="arrays_sha256"):
        at.Chip.from_conductances(directory)


def _smaller_linear(model: nn.Module) -> nn.Module:
    return nn.Sequential(*model[:3], at.AnalogLinear(64, 3, profile=PCM))


def _without_linear(model: nn.Module) -> nn.Module:
    return nn.Sequential(*model[:3])


def _with_extra_layer(model: nn.Module) -> nn.Module:
    return nn.Sequential(*model, at.AnalogLinear(5, 2, profile=PCM))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_smaller_linear, r"layer '3' has weights of shape \(3, 64\).*expects \(5, 64\)"),
        (_without_linear, r"layers \['3'\] that the model"),
        (_with_extra_layer, r"layer '4' is not in the conductance set"),
    ],
)
def test_imported_chip_refuses_a_model_that_does_not_match_the_set(exported, change, message):
    model, _, directory = exported
    chip = at.Chip.from_conductances(directory)
    with pytest.raises(ValueError, match=message), chip.deploy(change(model)):
        pass


def test_imported_chip_refuses_a_profile_that_tiles_the_layers_differently(exported):
    model, _, directory = exported
    chip = at.Chip.from_conductances(directory, profile=PCM.replace(tile_rows=256))
    with pytest.raises(ValueError, match="layer '0' is tiled as"), chip.deploy(model):
        pass


# -- evaluate on given chips ----------------------------------------------------------------


def _labelled_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn((48, 3, 6, 6), generator=gen)
    y = torch.randint(0, 5, (48,), generator=gen)
    return list(zip(x.split(16), y.split(16), strict=True))


def _accuracy_by_hand(chip: at.Chip, model: nn.Module, batches, time_s: float) -> float:
    correct = 0
    with chip.deploy(model, time_s=time_s), torch.no_grad():
        for x, y in batches:
            correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / sum(len(y) for _, y in batches)


def test_evaluate_scores_an_imported_chip_as_deploying_it_by_hand(exported):
    model, chip, directory = exported
    batches, times = _labelled_batches(), [0.0, 3600.0]
    imported = at.Chip.from_conductances(directory)
    report = at.evaluate(model, batches, times=times, chips=[imported, chip])
    for time_s in times:
        (row,) = report.select(setting="chip", time_s=time_s)
        by_hand = [_accuracy_by_hand(c, model, batches, time_s) for c in (imported, chip)]
        assert row.n_chips == 2 and row.noise_scale == 1.0
        assert row.accuracy_mean == pytest.approx(sum(by_hand) / 2)
        assert row.accuracy_std == pytest.approx(0.0)  # the same devices, the same read noise


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_chips": 3}, "n_chips"), ({"seed": 1}, "seed"), ({"noise_scales": [2.0]}, "noise_scales")],
)
def test_evaluate_on_given_chips_refuses_arguments_that_draw_chips(exported, kwargs, message):
    model, chip, _ = exported
    with pytest.raises(ValueError, match=message):
        at.evaluate(model, _labelled_batches(), chips=[chip], **kwargs)
