"""`convert` on a Hugging Face model built from a config (no weight download)."""

from __future__ import annotations

import pytest
import torch

import analogtorch as at
from analogtorch.nn import analog_layers

transformers = pytest.importorskip("transformers")

IDS = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(0))


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def test_an_ideal_conversion_of_bert_gives_its_logits():
    bert = _bert()
    analog = at.convert(bert, at.HardwareProfile.preset("ideal")).eval()
    with torch.no_grad():
        assert torch.allclose(analog(IDS).logits, bert(IDS).logits, atol=1e-6)


def test_every_bert_projection_runs_on_chips():
    profile = at.HardwareProfile.preset("pcm")
    analog = at.convert(_bert(), profile).eval()
    names = set(analog_layers(analog))
    # per encoder layer: query, key, value, attention output, intermediate, output
    assert len(names) == 2 * 6 + 2  # + pooler and classifier
    assert "bert.encoder.layer.0.attention.self.query" in names
    outputs = []
    for seed in (1, 1, 2):
        with torch.no_grad(), at.Chip(profile, seed).deploy(analog, 3600.0):
            outputs.append(analog(IDS).logits)
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    assert torch.isfinite(outputs[2]).all()
