"""Chip-population yield: exact Clopper–Pearson bounds, yield at a spec from the per-chip
accuracies the report keeps, the yield-curve plot, and chips scored a group at a time giving
exactly what scoring them one by one gives."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.train.chip_yield import clopper_pearson
from analogtorch.train.evaluate import ChipAccuracies, EvalRow, EvaluationReport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


# -- Clopper–Pearson --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_pass", "n", "lower", "upper"),
    [
        (0, 10, 0.0, 0.3085),  # upper = 1 - 0.025^(1/10)
        (10, 10, 0.6915, 1.0),  # lower = 0.025^(1/10)
        (5, 10, 0.1871, 0.8129),
        (0, 100, 0.0, 0.0362),
        (95, 100, 0.8872, 0.9836),
    ],
)
def test_clopper_pearson_matches_tabulated_bounds(n_pass, n, lower, upper):
    assert clopper_pearson(n_pass, n) == pytest.approx((lower, upper), abs=1e-4)


def test_clopper_pearson_all_or_none_has_the_closed_form():
    for n in (1, 7, 50):
        assert clopper_pearson(0, n)[1] == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-10)
        assert clopper_pearson(n, n)[0] == pytest.approx(0.025 ** (1 / n), rel=1e-10)


@pytest.mark.parametrize(("n_pass", "n"), [(3, 20), (12, 20), (37, 100)])
def test_clopper_pearson_bounds_leave_half_alpha_in_each_binomial_tail(n_pass, n):
    lower, upper = clopper_pearson(n_pass, n, confidence=0.9)
    assert binomial_cdf(n_pass, n, upper) == pytest.approx(0.05, abs=1e-9)
    assert 1 - binomial_cdf(n_pass - 1, n, lower) == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize(
    ("args", "name"),
    [((3, 0), "n="), ((-1, 10), "n_pass="), ((11, 10), "n_pass="), ((2, 10, 1.0), "confidence=")],
)
def test_clopper_pearson_refuses_impossible_counts(args, name):
    with pytest.raises(ValueError, match=name):
        clopper_pearson(*args)


# -- yield at a spec --------------------------------------------------------------------------

CHIPS_A = (0.97, 0.955, 0.94, 0.93, 0.96)
CHIPS_B = (0.80, 0.95, 0.99)


def hand_report() -> EvaluationReport:
    rows = [
        EvalRow("digital", "fp32", 0.0, 0.0, 0.95, 0.0, 1),
        EvalRow("a", "ideal", 0.0, 0.0, 0.97, 0.0, 1),
        EvalRow("a", "chip", 1.0, 60.0, sum(CHIPS_A) / 5, 0.0, 5),
        EvalRow("b", "ideal", 0.0, 0.0, 0.99, 0.0, 1),
        EvalRow("b", "chip", 1.0, 60.0, sum(CHIPS_B) / 3, 0.0, 3),
    ]
    chips = [ChipAccuracies("a", 1.0, 60.0, CHIPS_A), ChipAccuracies("b", 1.0, 60.0, CHIPS_B)]
    return EvaluationReport(rows, chips)


def test_yield_is_the_share_of_chips_at_or_above_the_threshold():
    result = hand_report().yield_at(0.955)
    (a,) = result.select(model="a")
    (b,) = result.select(model="b")
    assert (a.n_pass, a.n_chips, a.fraction) == (3, 5, 3 / 5)  # 0.97, 0.955 (tie), 0.96
    assert (b.n_pass, b.n_chips) == (1, 3)
    assert (a.lower, a.upper) == clopper_pearson(3, 5)
    assert a.threshold == 0.955 and a.time_s == 60.0 and a.noise_scale == 1.0


def test_yield_within_a_point_of_digital_uses_the_fp32_row():
    result = hand_report().yield_at(within=0.01)  # spec 0.95 - 0.01 = 0.94, tie passes
    (a,) = result.select(model="a")
    (b,) = result.select(model="b")
    assert a.threshold == pytest.approx(0.94)
    assert a.n_pass == 4  # all but 0.93
    assert b.n_pass == 2  # 0.95, 0.99


def test_yield_within_a_point_of_ideal_is_per_model():
    result = hand_report().yield_at(within=0.01, reference="ideal")
    (a,) = result.select(model="a")  # spec 0.96
    (b,) = result.select(model="b")  # spec 0.98
    assert (a.n_pass, b.n_pass) == (2, 1)


def test_yield_within_needs_one_digital_accuracy():
    report = hand_report()
    report.rows = [r for r in report.rows if r.setting != "fp32"]
    with pytest.raises(ValueError, match="fp32"):
        report.yield_at(within=0.01)
    assert (
        report.yield_at(within=0.01, reference=0.95).rows
        == hand_report().yield_at(within=0.01).rows
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({}, "threshold"), ({"threshold": 95}, "threshold"), ({"within": -0.01}, "within")],
)
def test_yield_refuses_a_missing_or_impossible_spec(kwargs, name):
    with pytest.raises(ValueError, match=name):
        hand_report().yield_at(**kwargs)


def test_yield_report_prints_and_writes_markdown():
    result = hand_report().yield_at(within=0.01)
    assert "4/5" in str(result) and "95 % CI" in str(result)
    assert result.to_markdown().count("\n") == 2 + len(result.rows)


def test_yield_curve_plot_is_written(tmp_path):
    path = hand_report().plot_yield(tmp_path / "yield.png", spec=0.94, time_s=60.0)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_reports_added_together_keep_every_chip():
    report = hand_report() + hand_report()
    assert len(report.chips) == 4


# -- evaluate keeps every chip ----------------------------------------------------------------


def blob_loader(n: int = 120, batch: int = 40, seed: int = 0):
    """Four Gaussian blobs in 20-D, labels 0..3, fixed batches."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 1.5 * torch.eye(4, 20)[y] + 0.7 * torch.randn(n, 20, generator=gen)
    return list(zip(x.split(batch), y.split(batch), strict=True))


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 4)
    )
    at.train.fit(model, blob_loader(), epochs=10, lr=1e-2)
    return model


def one_by_one(model, loader, profile, seeds, time_s):
    """Accuracy on each chip, deployed alone and counted here."""
    accuracies = []
    for seed in seeds:
        correct = total = 0
        with torch.no_grad(), at.Chip(profile, seed).deploy(model, time_s=time_s):
            for x, y in loader:
                correct += int((model(x).argmax(dim=1) == y).sum())
                total += y.numel()
        accuracies.append(correct / total)
    return accuracies


# pcm: 8-bit converters, conductance-dependent programming noise, drift with compensation;
# tile_rows=8 cuts the first layer into 3 tiles (each with its own ADC and read-out noise)
PROFILES = {
    "pcm-tiled": at.HardwareProfile.preset("pcm").replace(tile_rows=8),
    "4bit-10pct": at.HardwareProfile.preset("seed-4bit-10pct").replace(read_noise_std=0.05),
    "shot-noise-no-adc": at.HardwareProfile(
        prog_noise_std=0.05, read_noise_std=0.03, shot_noise_coeff=0.01, output_noise_std=0.02
    ),
}


@pytest.mark.parametrize("name", PROFILES)
def test_evaluate_keeps_the_accuracy_of_each_chip_scored_alone(mlp, name):
    profile, loader, times, scales = PROFILES[name], blob_loader(), [1.0, 86400.0], [1.0, 3.0]
    amodel = at.convert(mlp, profile)
    report = at.evaluate(amodel, loader, n_chips=5, times=times, noise_scales=scales, seed=4)
    for scale in scales:
        for t in times:
            (chips,) = report.select_chips(noise_scale=scale, time_s=t)
            alone = one_by_one(amodel, loader, profile.scale_noise(scale), range(4, 9), t)
            assert list(chips.accuracies) == alone
    spread = [c.accuracies for c in report.select_chips(noise_scale=3.0)]
    assert any(len(set(a)) > 1 for a in spread)  # the chips differ: equality is not trivial


def test_chip_rows_summarise_the_chips_they_keep(mlp):
    report = at.evaluate(
        at.convert(mlp, PROFILES["4bit-10pct"]), blob_loader(), n_chips=4, times=[1.0, 3600.0]
    )
    for row in report.select(setting="chip"):
        (chips,) = report.select_chips(
            model=row.model, noise_scale=row.noise_scale, time_s=row.time_s
        )
        assert len(chips.accuracies) == row.n_chips
        assert row.accuracy_mean == pytest.approx(sum(chips.accuracies) / row.n_chips, abs=1e-15)


def test_json_record_keeps_every_chip(mlp, tmp_path):
    report = at.evaluate(at.convert(mlp, PROFILES["4bit-10pct"]), blob_loader(), n_chips=3)
    data = json.loads(report.to_json(tmp_path / "report.json").read_text())
    assert [
        ChipAccuracies(**{**c, "accuracies": tuple(c["accuracies"])}) for c in data["chips"]
    ] == (report.chips)
