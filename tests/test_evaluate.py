"""Robustness evaluation over chips, noise scales and times; the fit loop's divergence check."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from rich.console import Console
from torch import nn

import analogtorch as at
from analogtorch.train import EvalRow, TrainingDivergedError, accuracy, fit

PCM = at.HardwareProfile.preset("pcm")
# Quantised but with no stochastic noise and no drift: every chip is the same chip.
NOISE_FREE = at.HardwareProfile(weight_bits=4, dac_bits=6, adc_bits=6)
TIMES = [0.0, 3600.0]
SCALES = [0.0, 1.0]


def make_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs in 6-D, labels 0..2."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = 2.0 * torch.eye(3, 6)
    return centers[y] + 0.6 * torch.randn(n, 6, generator=gen), y


def make_loader(batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = make_data()
    return list(zip(x.split(batch), y.split(batch), strict=True))


@pytest.fixture(scope="module")
def digital() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    fit(model, make_loader(), epochs=15, lr=1e-2)
    return model


def test_report_has_one_ideal_row_and_one_row_per_scale_and_time(digital):
    amodel = at.convert(digital, PCM)
    report = at.evaluate(amodel, make_loader(), n_chips=3, times=TIMES, noise_scales=SCALES)

    ideal, *chip_rows = report.rows
    assert (ideal.setting, ideal.n_chips, ideal.accuracy_std) == ("ideal", 1, 0.0)
    assert len(chip_rows) == len(SCALES) * len(TIMES)
    assert {(r.noise_scale, r.time_s) for r in chip_rows} == {(s, t) for s in SCALES for t in TIMES}
    for row in report.rows:
        assert row.model == "model"
        assert 0.0 <= row.accuracy_mean <= 1.0
        assert row.accuracy_std >= 0.0
    for row in chip_rows:
        assert row.setting == "chip"
        assert row.n_chips == 3
    assert ideal.accuracy_mean > 0.8  # the trained model is evaluated, not a random one


def test_evaluate_leaves_the_training_mode_as_it_was(digital):
    amodel = at.convert(digital, PCM).train()
    at.evaluate(amodel, make_loader(), n_chips=1, times=[0.0])
    assert amodel.training


def test_noise_free_profile_gives_zero_spread_over_chips(digital):
    amodel = at.convert(digital, NOISE_FREE)
    report = at.evaluate(amodel, make_loader(), n_chips=3, times=TIMES, noise_scales=SCALES)
    chip_rows = report.select(setting="chip")
    assert chip_rows
    for row in chip_rows:
        assert row.accuracy_std == 0.0
        assert row.accuracy_mean == report.rows[0].accuracy_mean


def test_evaluating_twice_gives_identical_rows(digital):
    amodel = at.convert(digital, PCM.scale_noise(5.0))
    loader = make_loader()
    first = at.evaluate(amodel, loader, n_chips=3, times=TIMES, noise_scales=SCALES, seed=7)
    second = at.evaluate(amodel, loader, n_chips=3, times=TIMES, noise_scales=SCALES, seed=7)
    assert first.rows == second.rows
    # with this much noise the chips differ, so equality above is not trivial
    assert any(r.accuracy_std > 0 for r in first.select(setting="chip", noise_scale=1.0))


def test_digital_model_needs_a_profile(digital):
    with pytest.raises(ValueError, match="profile"):
        at.evaluate(digital, make_loader(), n_chips=2)


def test_digital_model_with_profile_is_evaluated_on_the_same_chips(digital):
    profile = PCM.scale_noise(5.0)
    loader = make_loader()
    kwargs = {"n_chips": 2, "times": TIMES, "noise_scales": SCALES, "seed": 3}
    from_digital = at.evaluate(digital, loader, profile=profile, **kwargs)
    from_analog = at.evaluate(at.convert(digital, profile), loader, **kwargs)
    assert from_digital.rows == from_analog.rows
    assert all(type(m) is not at.AnalogLinear for m in digital.modules())


def small_report(digital: nn.Module) -> at.EvaluationReport:
    amodel = at.convert(digital, PCM)
    return at.evaluate(
        amodel, make_loader(), n_chips=2, times=TIMES, noise_scales=SCALES, label="tiny mlp"
    )


def test_csv_round_trip(digital, tmp_path):
    report = small_report(digital)
    path = report.to_csv(tmp_path / "rows.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    types = {name: field.type for name, field in EvalRow.__dataclass_fields__.items()}
    parsed = [
        EvalRow(**{k: {"str": str, "float": float, "int": int}[types[k]](v) for k, v in r.items()})
        for r in rows
    ]
    assert parsed == report.rows


def test_json_round_trip(digital, tmp_path):
    report = small_report(digital)
    path = report.to_json(tmp_path / "rows.json")
    data = json.loads(path.read_text())
    assert [EvalRow(**row) for row in data["rows"]] == report.rows


def test_table_renders_with_rich(digital):
    report = small_report(digital)
    console = Console(record=True, width=120)
    console.print(report.table())
    text = console.export_text()
    assert "tiny mlp" in text
    assert report.rows[0].formatted() in text


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_chips": 0}, "n_chips"),
        ({"times": [1.0, -1.0]}, "times"),
        ({"times": [math.inf]}, "times"),
        ({"noise_scales": [math.nan]}, "noise_scales"),
        ({"noise_scales": [-0.5]}, "noise_scales"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(digital, kwargs, argument):
    amodel = at.convert(digital, PCM)
    with pytest.raises(ValueError, match=argument):
        at.evaluate(amodel, make_loader(), **kwargs)


def test_accuracy_on_an_empty_loader_raises(digital):
    with pytest.raises(ValueError, match="no samples"):
        accuracy(digital, [])


def test_accuracy_counts_correct_predictions():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(model, [(x[:3], y[:3]), (x[3:], y[3:])]) == pytest.approx(0.75)


# -- fit -----------------------------------------------------------------------------------


class InfAfterFirstEpoch(nn.Module):
    """Finite logits during epoch 0, infinite from then on."""

    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)
        self.steps_per_epoch = steps_per_epoch
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.linear(x)
        return out if self.calls <= self.steps_per_epoch else out * math.inf


def test_fit_raises_naming_the_epoch_when_the_loss_becomes_infinite():
    loader = make_loader()
    torch.manual_seed(0)
    model = InfAfterFirstEpoch(len(loader))
    with pytest.raises(TrainingDivergedError) as info:
        fit(model, loader, epochs=3, label="blowup")
    message = str(info.value)
    assert "epoch 1" in message
    assert "blowup" in message
    assert "learning rate" in message  # says what to try


def test_fit_with_a_huge_learning_rate_diverges_loudly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+.*lr=1e\+30"):
        fit(model, make_loader(), epochs=20, lr=1e30)


def test_fit_keeps_the_last_good_parameters_when_it_diverges():
    loader = make_loader()
    torch.manual_seed(0)
    model = InfAfterFirstEpoch(len(loader))
    snapshots: list[dict[str, torch.Tensor]] = []
    hook = model.register_forward_pre_hook(
        lambda m, _: snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
    )
    with pytest.raises(TrainingDivergedError):
        fit(model, loader, epochs=3)
    hook.remove()
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[-1][key])


def test_fit_returns_one_decreasing_loss_per_epoch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    history = fit(model, make_loader(), epochs=5, lr=1e-2)
    assert len(history) == 5
    assert history[-1] < history[0]
    assert not model.training


def test_chip_spread_follows_the_noise_scale_as_the_programming_variance_predicts():
    # One analog output y = w_u u + w_1 * 1 with stored weights (1, 0) (row max 1), so the
    # decision u > tau has tau = -sigma z_1 / (1 + sigma z_u) ~ -sigma z_1 on a chip with
    # programming noise sigma = k * sigma_0 at noise scale k. On a dense grid of u in [-1, 1]
    # with class 0 for u > 0, the accuracy is 1 - |tau| / 2: mean 1 - sigma sqrt(2/pi) / 2 and
    # std (sigma / 2) sqrt(1 - 2/pi), both proportional to the noise scale.
    sigma_0, n_chips = 0.04, 400
    profile = at.HardwareProfile(prog_noise_std=sigma_0)
    layer = at.AnalogLinear(2, 2, bias=False, profile=profile)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    u = torch.linspace(-1, 1, 4001)
    x = torch.stack([u, torch.ones_like(u)], dim=1)
    loader = [(x, (u < 0).long())]  # class 0 wins when y > 0
    report = at.evaluate(layer, loader, n_chips=n_chips, noise_scales=[1.0, 2.0])
    for scale in (1.0, 2.0):
        (row,) = report.select(setting="chip", noise_scale=scale)
        sigma = scale * sigma_0
        assert 1 - row.accuracy_mean == pytest.approx(sigma * math.sqrt(2 / math.pi) / 2, rel=0.1)
        assert row.accuracy_std == pytest.approx(sigma / 2 * math.sqrt(1 - 2 / math.pi), rel=0.12)
