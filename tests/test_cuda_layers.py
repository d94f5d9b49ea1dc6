"""Every analog layer type on a CUDA device (skipped without one): the deterministic
hardware model (quantisation, converters, circuit; no noise) gives the CPU outputs, a noisy
training step under fp16/bf16 autocast stays finite, and chips program on the device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analogtorch as at

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

QUANTISED = at.HardwareProfile(dac_bits=8, adc_bits=8, weight_bits=6)
NOISY = at.HardwareProfile.preset("seed-4bit-10pct")


class _Zoo(nn.Module):
    """One of each convertible layer type on a (N, 2, 8, 8) image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.conv1d = nn.Conv1d(4, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.gru = nn.GRU(8, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.up(torch.relu(self.conv(x))))  # (N, 4, 16, 16)
        seq = torch.relu(self.conv1d(x.flatten(2)[:, :, :32])).transpose(1, 2)  # (N, 32, 8)
        seq = seq + self.attn(seq, seq, seq, need_weights=False)[0]
        seq = self.gru(self.rnn(seq)[0])[0]
        return self.head(seq[:, -1])


def _model(profile: at.HardwareProfile) -> nn.Module:
    torch.manual_seed(0)
    return at.convert(_Zoo(), profile)


def test_the_deterministic_hardware_model_gives_the_cpu_outputs_on_cuda():
    x = torch.rand(4, 2, 8, 8)
    cpu = _model(QUANTISED).eval()
    reference = cpu(x)
    gpu = cpu.to("cuda")
    assert torch.allclose(gpu(x.cuda()).cpu(), reference, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_noisy_training_step_under_cuda_autocast_is_finite(dtype):
    model = _model(NOISY).cuda()
    x = torch.rand(4, 2, 8, 8, device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with torch.autocast("cuda", dtype=dtype):
        loss = nn.functional.cross_entropy(
            model(x), torch.zeros(4, dtype=torch.long, device="cuda")
        )
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_chips_program_and_read_on_cuda():
    model = _model(NOISY).cuda().eval()
    x = torch.rand(4, 2, 8, 8, device="cuda")
    outputs = []
    for seed in (1, 1, 2):
        with torch.no_grad(), at.Chip(NOISY, seed).deploy(model, 3600.0):
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
