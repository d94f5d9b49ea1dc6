"""`evaluate(cache=...)`: an interrupted chip evaluation resumes at the next chip with the
same numbers, and a cache written for other weights, data or hardware is never read."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch import nn

import analogtorch as at

# the module (the package attribute of the same name is the function)
evaluate_module = importlib.import_module("analogtorch.train.evaluate")
_READ_CHIP = evaluate_module._read_chip
PCM = at.HardwareProfile.preset("pcm")
TIMES = [0.0, 3600.0]
SCALES = [0.5, 1.0]


class Killed(Exception):
    """Stands for the process being killed mid-evaluation."""


def _loader(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(90) % 3
    x = 2.0 * torch.eye(3, 6)[y] + 0.8 * torch.randn(90, 6, generator=gen)
    return list(zip(x.split(30), y.split(30), strict=True))


def _model() -> nn.Module:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    return at.convert(digital, PCM)


def _run(model, loader, cache, **kwargs):
    return at.evaluate(
        model, loader, n_chips=3, times=TIMES, noise_scales=SCALES, seed=4, cache=cache, **kwargs
    )


def _counting_reads(monkeypatch, fail_after: int | None = None) -> list[int]:
    reads = []
    read = _READ_CHIP

    def counted(*args, **kwargs):
        if fail_after is not None and len(reads) == fail_after:
            raise Killed  # the process is killed here
        reads.append(1)
        return read(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "_read_chip", counted)
    return reads


def test_an_interrupted_evaluation_resumes_at_the_next_chip_with_the_same_numbers(
    tmp_path, monkeypatch
):
    model, loader, cache = _model(), _loader(), tmp_path / "scores.json"
    plain = _run(model, loader, None)
    _counting_reads(monkeypatch, fail_after=5)
    with pytest.raises(Killed):
        _run(model, loader, cache)
    kept = json.loads(cache.read_text())["scores"]
    assert len(kept) == 1 + 5  # the ideal score and the five chip reads before the kill
    reads = _counting_reads(monkeypatch)
    resumed = _run(model, loader, cache)
    assert len(reads) == len(SCALES) * 3 * len(TIMES) - 5  # only the reads still missing
    assert resumed.to_dicts() == plain.to_dicts()
    assert [c.accuracies for c in resumed.chips] == [c.accuracies for c in plain.chips]


@pytest.mark.parametrize("change", ["weights", "data", "profile", "calibration"])
def test_a_cache_of_other_weights_data_or_hardware_is_not_used(tmp_path, monkeypatch, change):
    model, loader, cache = _model(), _loader(), tmp_path / "scores.json"
    _run(model, loader, cache)
    kwargs = {}
    if change == "weights":
        with torch.no_grad():
            next(model.parameters())[0, 0] += 0.5
    elif change == "data":
        loader = _loader(seed=1)
    elif change == "profile":
        kwargs["profile"] = PCM.replace(weight_bits=4)
    else:
        kwargs["calibration"] = [x for x, _ in loader]
    reads = _counting_reads(monkeypatch)
    again = _run(model, loader, cache, **kwargs)
    assert len(reads) == len(SCALES) * 3 * len(TIMES)  # everything measured afresh
    fresh = _run(model, loader, None, **kwargs)
    assert again.to_dicts() == fresh.to_dicts()


def test_an_unreadable_cache_starts_over_and_chips_with_cache_is_refused(tmp_path):
    model, loader, cache = _model(), _loader(), tmp_path / "scores.json"
    cache.write_text("{ torn")
    assert _run(model, loader, cache).to_dicts() == _run(model, loader, None).to_dicts()
    assert json.loads(cache.read_text())["scores"]
    with pytest.raises(ValueError, match="cache= keeps scores of drawn chips"):
        at.evaluate(model, loader, chips=[at.Chip(PCM, 0)], cache=cache)


def test_a_digital_model_resumes_with_the_dac_ranges_of_an_uninterrupted_run(tmp_path, monkeypatch):
    # A digital model is converted inside evaluate and its DAC ranges are set by the first
    # forward. A resumed run takes the ideal score from the cache, so without an explicit
    # ideal read first the ranges would come from a noisy chip's hidden activations.
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    digital.append(nn.Linear(64, 3))
    loader, cache = _loader(), tmp_path / "scores.json"
    kwargs = dict(profile=PCM, noise_scales=[3.0], times=[0.0], n_chips=4, seed=4)
    plain = at.evaluate(digital, loader, **kwargs)
    _counting_reads(monkeypatch, fail_after=1)
    with pytest.raises(Killed):
        at.evaluate(digital, loader, cache=cache, **kwargs)
    _counting_reads(monkeypatch)
    resumed = at.evaluate(digital, loader, cache=cache, **kwargs)
    assert [c.accuracies for c in resumed.chips] == [c.accuracies for c in plain.chips]
