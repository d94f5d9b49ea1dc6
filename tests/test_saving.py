"""`at.save` / `at.load`: one file, no pickled code, the same model back."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.models import NormalizedInput, build_model
from analogtorch.nn import analog_layers
from analogtorch.saving import metadata

PRESET = at.HardwareProfile.preset("seed-4bit-10pct")


def _trained(model: nn.Module) -> nn.Module:
    """A few Adam steps, so weights and learned DAC/ADC ranges leave their initial values."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def _chip_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with at.Chip.for_model(model, seed=5).deploy(model, time_s=3600.0):  # layers' own profiles
        return model(x)


def test_a_saved_model_loads_with_the_same_outputs_ideal_and_on_a_chip(tmp_path):
    net, _ = build_model("mnist-mlp", seed=0)
    model = at.convert(net, PRESET, skip=["1"], seed=3)  # first layer kept digital
    layer = dict(model.named_modules())["3"]
    layer.set_profile(PRESET.replace(adc_bits=6))  # layers may differ
    _trained(model)
    path = at.save(model, tmp_path / "mlp.pt", arch="mnist-mlp", metadata={"accuracy": 0.5})

    loaded = at.load(path)
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(_chip_outputs(loaded, x), _chip_outputs(model, x))
    assert type(dict(loaded.named_modules())["1"]) is nn.Linear
    assert dict(loaded.named_modules())["3"].profile.adc_bits == 6
    for name, original in model.state_dict().items():  # ranges learned, and restored
        assert torch.equal(loaded.state_dict()[name], original), name
    assert metadata(path) == {"accuracy": 0.5}


def test_the_file_is_plain_data_readable_without_unpickling_code(tmp_path):
    model = at.convert(build_model("mnist-mlp", seed=0)[0], PRESET)
    path = at.save(model, tmp_path / "m.pt", arch="mnist-mlp")
    record = torch.load(path, weights_only=True)  # raises on any pickled class
    assert record["format"] == "analogtorch-model/1"
    assert set(record["layers"]) == {"1", "3", "5"}


def test_a_model_without_arch_loads_onto_the_digital_model_given(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    model = at.convert(net, PRESET)
    path = at.save(model, tmp_path / "custom.pt")
    with pytest.raises(ValueError, match="names no arch; pass the digital model"):
        at.load(path)
    x = torch.rand(4, 12)
    loaded = at.load(
        path, model=nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    )
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    with pytest.raises(ValueError, match="does not match the model"):
        at.load(
            path, model=nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 4))
        )
    with pytest.raises(ValueError, match=r"analog layers \['3'\] the model does not have"):
        at.load(path, model=nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))


def test_bad_files_and_arguments_are_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        at.load(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not an analogtorch model file"):
        at.load(other)
    with pytest.raises(ValueError, match="no analog layers; convert it first"):
        at.save(nn.Linear(2, 2), tmp_path / "digital.pt")
    with pytest.raises(ValueError, match="unknown arch 'mlp'"):
        at.save(at.convert(nn.Linear(2, 2), PRESET), tmp_path / "x.pt", arch="mlp")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_file_carrying_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "analogtorch-model/1", "x": _Payload()}, protocol=2))
    with pytest.raises(ValueError, match="not an analogtorch model file"):
        at.load(path)
    assert not (tmp_path / "pwned").exists()


def test_normalized_input_takes_unit_images_and_round_trips(tmp_path):
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    net, _ = build_model("cifar-resnet20", seed=0)
    model = at.convert(NormalizedInput(net, mean, std), PRESET)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.eval()
    by_hand = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model(x), model.net(by_hand), atol=0, rtol=0)
    loaded = at.load(at.save(model, tmp_path / "c.pt", arch="cifar-resnet20"))
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="std"):
        NormalizedInput(net, (0.5,), (0.0,))


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


def test_a_model_with_a_composite_analog_layer_round_trips(tmp_path):
    """An LSTM becomes several crossbars (one analog layer each) under one converted module."""
    torch.manual_seed(0)
    model = at.convert(_Recurrent(), {"rnn": PRESET, "*": at.HardwareProfile.preset("pcm")})
    at.save(model, tmp_path / "rnn.pt")
    loaded = at.load(tmp_path / "rnn.pt", model=_Recurrent())
    x = torch.rand(3, 5, 4)
    assert torch.equal(loaded(x), model.eval()(x))
    profiles = {n: layer.profile.name for n, layer in analog_layers(loaded).items()}
    assert profiles == {"rnn.l0.ih": PRESET.name, "rnn.l0.hh": PRESET.name, "fc": "pcm"}
