"""One seeding discipline: ``seed_noise`` restarts every stream of a model, so noisy
training forwards are reproducible from one seed and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analogtorch as at
from analogtorch.ais import IsingAIS
from analogtorch.hardware.random import derive_seed
from analogtorch.nn.residual import PerturbedLayer, StochasticResidual
from analogtorch.train.baselines import noise_injection_convert, variance_aware_convert
from analogtorch.train.trainer import Trainer, epoch_batches

NOISY = at.HardwareProfile(prog_noise_std=0.1, output_noise_std=0.05, read_noise_std=0.02)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))


def _analog():
    return at.convert(_mlp(), NOISY), torch.rand(5, 6)


def _residual():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
    return nn.Sequential(StochasticResidual(block, 6, profile=NOISY)), torch.rand(5, 6)


def _perturbed():
    torch.manual_seed(0)
    layer = PerturbedLayer(nn.Linear(6, 6), nn.Linear(6, 6), profile=NOISY)
    return nn.Sequential(layer), torch.rand(5, 6)


def _noise_injection():
    return noise_injection_convert(_mlp(), 0.05), torch.rand(5, 6)


def _variance_aware():
    return variance_aware_convert(_mlp(), 0.02, 0.1), torch.rand(5, 6)


def _ais():
    system = IsingAIS((1, 2, 2), steps_per_segment=5, profile=NOISY, method="euler_maruyama")
    return system, system.sample_latent(3, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "build", [_analog, _residual, _perturbed, _noise_injection, _variance_aware, _ais]
)
def test_seed_noise_restarts_every_stream_of_a_model(build):
    model, x = build()
    model.train()

    def forward(seed: int) -> torch.Tensor:
        at.seed_noise(model, seed)
        with torch.no_grad():
            return torch.cat([model(x).flatten(), model(x).flatten()])

    first = forward(3)
    assert not torch.equal(first[: first.numel() // 2], first[first.numel() // 2 :])  # noisy
    assert torch.equal(forward(3), first)
    assert not torch.equal(forward(4), first)


class _Crash:
    def on_epoch_start(self, trainer, epoch):
        if epoch == 2:
            raise KeyboardInterrupt


@pytest.mark.parametrize("build", [_residual, _noise_injection, _variance_aware])
def test_a_resumed_noisy_run_ends_exactly_where_the_uninterrupted_one_does(build, tmp_path):
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(32, 6, generator=gen), torch.randint(0, 3, (32,), generator=gen)

    def run(checkpoint, callbacks=()):
        model, _ = build()
        head = nn.Sequential(model, nn.Linear(6, 3)) if build is _residual else model

        def loss(net, xb, yb):
            return nn.functional.cross_entropy(net(xb), yb), {}

        trainer = Trainer(
            head,
            loss,
            torch.optim.SGD(head.parameters(), lr=0.1),
            epochs=4,
            checkpoint=checkpoint,
            callbacks=callbacks,
            seed=9,
        )
        trainer.fit(epoch_batches(x, y, 8, seed=9))
        return head

    full = run(tmp_path / "full.pt")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut.pt", callbacks=[_Crash()])
    resumed = run(tmp_path / "cut.pt")
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_derive_seed_is_stable_and_separates_its_parts():
    assert derive_seed(1, "a") == derive_seed(1, "a")
    assert len({derive_seed(1, "a"), derive_seed(1, "b"), derive_seed(2, "a")}) == 3
    assert 0 <= derive_seed("x") < 2**63
