"""`Trainer` mid-epoch checkpoints: a run killed inside an epoch resumes bit-identically."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analogtorch.train.checkpoint as checkpoint_module
from analogtorch import HardwareProfile, convert
from analogtorch.deq.hybrid import build_hybrid_deq
from analogtorch.deq.regularizers import RegularizerWeights
from analogtorch.deq.training import DEQLoss, ProjectContractive
from analogtorch.hardware.random import derive_seed, load_noise_state, noise_state
from analogtorch.nn.residual import StochasticResidual
from analogtorch.train.baselines import noise_injection_convert, variance_aware_convert
from analogtorch.train.trainer import Trainer, epoch_batches

N, FEATURES, CLASSES, BATCH = 56, 4, 3, 8  # 7 steps per epoch
PROFILE = HardwareProfile.preset("seed-4bit-10pct")


class Killed(RuntimeError):
    """Stands for the process being killed."""


class KillAt:
    """Raises after the step ``(epoch, step)`` was trained, before its checkpoint."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_step_end(self, trainer, epoch, step):
        if (epoch, step) == self.at:
            raise Killed(f"killed after epoch {epoch}, step {step}")


class StepCounter:
    """A callback whose state depends on having seen every step."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, trainer, epoch, step):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def _augmented(seed: int = 2):
    """Shuffled batches with jitter drawn, inside the iterator, from a per-epoch generator
    (like ``augment.augmented``)."""
    base = epoch_batches(*_data(), BATCH, seed=seed)

    def batches(epoch):
        gen = torch.Generator().manual_seed(derive_seed(seed, "augment", epoch))
        for x, y in base(epoch):
            yield x + 0.1 * torch.randn(x.shape, generator=gen), y

    return batches


def _mlp(init_seed: int) -> nn.Sequential:
    torch.manual_seed(init_seed)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def analog_mlp(init_seed: int) -> nn.Module:
    return convert(_mlp(init_seed), PROFILE)


def stochastic_residual(init_seed: int) -> nn.Module:
    torch.manual_seed(init_seed)
    block = StochasticResidual(
        nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.Tanh()), FEATURES, profile=PROFILE,
        beta_init=0.5,
    )  # fmt: skip
    return nn.Sequential(block, nn.Linear(FEATURES, CLASSES))


def noise_injection(init_seed: int) -> nn.Module:
    return noise_injection_convert(_mlp(init_seed), 0.1, 3)


def variance_aware(init_seed: int) -> nn.Module:
    return variance_aware_convert(_mlp(init_seed), 0.02, 0.2, 3)


def _trainer(model, epochs, path, callbacks=(), every=1e-9, seed=5):
    def loss_fn(net, x, y):
        # the trainer's generator feeds the loss: its state must resume too
        logits = net(x)
        jitter = 0.05 * torch.randn(logits.shape, generator=trainer.generator)
        return F.cross_entropy(logits + jitter, y), {"jitter": float(jitter.abs().mean())}

    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    trainer = Trainer(
        model, loss_fn, optimizer, epochs=epochs, callbacks=callbacks, checkpoint=path,
        checkpoint_every_s=every, seed=seed,
    )  # fmt: skip
    return trainer


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _killed_then_resumed(build, tmp_path, kill=(1, 3)):
    """Train 2 epochs, killed after step ``kill``; resume in a fresh model and trainer."""
    path = tmp_path / "run.pt"
    batches = _augmented()
    first = _trainer(build(0), 2, path, callbacks=[StepCounter(), KillAt(*kill)])
    with pytest.raises(Killed):
        first.fit(batches)
    counter = StepCounter()
    resumed = _trainer(build(99), 2, path, callbacks=[counter])  # other init: all from file
    history = resumed.fit(batches, resume=True)
    return resumed.model, history, counter


def _uninterrupted(build, tmp_path, seed=5):
    counter = StepCounter()
    path = tmp_path / f"full-{seed}.pt"
    trainer = _trainer(build(0), 2, path, callbacks=[counter], seed=seed)
    history = trainer.fit(_augmented())
    return trainer.model, history, counter


@pytest.mark.parametrize(
    "build", [analog_mlp, stochastic_residual, noise_injection, variance_aware]
)
def test_run_killed_mid_epoch_resumes_bit_identical(tmp_path, build):
    full, full_history, full_counter = _uninterrupted(build, tmp_path)
    resumed, history, counter = _killed_then_resumed(build, tmp_path)
    _assert_same(_state(full), _state(resumed))
    assert history == full_history
    assert [r["epoch"] for r in history] == [0.0, 1.0]
    assert counter.steps == full_counter.steps == 14  # a callback's own state resumed


def test_run_killed_after_the_last_step_of_an_epoch_resumes_bit_identical(tmp_path):
    full, full_history, _ = _uninterrupted(analog_mlp, tmp_path)
    resumed, history, _ = _killed_then_resumed(analog_mlp, tmp_path, kill=(1, 6))
    _assert_same(_state(full), _state(resumed))
    assert history == full_history


def test_mid_epoch_checkpoint_records_the_step_and_loads_weights_only(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        _trainer(analog_mlp(0), 2, path, callbacks=[KillAt(1, 3)]).fit(_augmented())
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and state["steps_done"] == 3
    assert state["count"] == 3 * BATCH and set(state["sums"]) == {"loss", "jitter"}
    assert len(state["history"]) == 1
    assert set(state["noise"]) == {"0", "2"}  # the two analog layers
    assert not list(tmp_path.glob(".*partial"))  # no temporary file left behind


def test_noise_and_seed_change_the_trained_parameters(tmp_path):
    """The streams restored above matter: another noise seed ends elsewhere."""
    a, _, _ = _uninterrupted(analog_mlp, tmp_path, seed=5)
    b, _, _ = _uninterrupted(analog_mlp, tmp_path, seed=6)
    assert not torch.equal(a[0].weight, b[0].weight)


@pytest.mark.parametrize("skipped", ["load_noise_state", "generator"])
def test_resume_without_restoring_the_streams_would_differ(tmp_path, monkeypatch, skipped):
    full, _, _ = _uninterrupted(analog_mlp, tmp_path)
    if skipped == "load_noise_state":
        monkeypatch.setattr(checkpoint_module, "load_noise_state", lambda model, state: model)
    else:
        monkeypatch.setattr(
            checkpoint_module.MidEpoch, "from_state",
            classmethod(lambda cls, s: cls(
                int(s["steps_done"]), dict(s["sums"]), int(s["count"]), s["optimizer"],
                torch.Generator().get_state(), s["noise"], s["callbacks"],
            )),
        )  # fmt: skip
    resumed, _, _ = _killed_then_resumed(analog_mlp, tmp_path)
    assert not torch.equal(full[0].weight, resumed[0].weight)


def test_epoch_only_checkpoint_still_resumes(tmp_path):
    full, full_history, _ = _uninterrupted(analog_mlp, tmp_path)
    path = tmp_path / "old.pt"
    _trainer(analog_mlp(0), 1, path, every=None).fit(_augmented())
    state = torch.load(path, weights_only=True)
    del state["callbacks"]  # the layout written before callback state was kept
    torch.save(state, path)
    resumed = _trainer(analog_mlp(99), 2, path, callbacks=[StepCounter()], every=None)
    history = resumed.fit(_augmented(), resume=True)
    _assert_same(_state(full), _state(resumed.model))
    assert history == full_history


class Jitter(nn.Module):
    """Reseedable, but cannot save where its stream stands."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator()

    def reseed(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x):
        return x + 0.1 * torch.randn(x.shape, generator=self.generator)


def test_model_with_unsavable_streams_gets_epoch_checkpoints_only(tmp_path):
    path = tmp_path / "run.pt"
    model = nn.Sequential(Jitter(), _mlp(0))
    assert noise_state(model) is None
    with pytest.raises(Killed):
        _trainer(model, 2, path, callbacks=[KillAt(1, 3)]).fit(_augmented())
    state = torch.load(path, weights_only=True)
    assert "steps_done" not in state and state["epoch"] == 0


def test_noise_state_restores_the_draws_of_every_random_module():
    x = torch.randn(BATCH, FEATURES)
    for build in (analog_mlp, stochastic_residual, noise_injection, variance_aware):
        model, other = build(0).train(), build(0).train()
        model(x), other(x)  # set the ranges, clip the weights, create the lazy streams
        model(x)  # streams move on: ``other`` is one draw behind
        saved = noise_state(model)
        expected = model(x)
        load_noise_state(other, saved)
        assert torch.equal(other(x), expected), build.__name__
        fresh = build(0).train()
        fresh(x)
        assert not torch.equal(fresh(x), expected), build.__name__  # the draw matters


def test_load_noise_state_refuses_another_structure():
    saved = noise_state(analog_mlp(0))
    with pytest.raises(ValueError, match="same structure"):
        load_noise_state(stochastic_residual(0), saved)


@pytest.mark.parametrize("every", [0.0, -1.0])
def test_trainer_rejects_non_positive_checkpoint_interval(every):
    model = _mlp(0)
    with pytest.raises(ValueError, match="checkpoint_every_s"):
        Trainer(model, None, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
                checkpoint_every_s=every)  # fmt: skip


def test_noisy_hybrid_deq_killed_mid_epoch_resumes_bit_identical(tmp_path):
    """Training noise, Hutchinson probes (DEQLoss's own generator) and projections."""
    pcm = HardwareProfile.preset("pcm")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 5, generator=g), torch.randint(0, 3, (24,), generator=g)

    def run(path, init_seed, kill=None):
        model = build_hybrid_deq(5, 3, pcm, width=4, seed=init_seed)
        loss = DEQLoss("classification", RegularizerWeights(jacobian=0.1))
        callbacks = [loss, ProjectContractive(), *([KillAt(*kill)] if kill else [])]
        trainer = Trainer(
            model, loss, torch.optim.Adam(model.parameters(), lr=0.05), epochs=2,
            callbacks=callbacks, checkpoint=path, checkpoint_every_s=1e-9, max_grad_norm=10.0,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return model, trainer.fit(epoch_batches(x, y, 8, seed=1))

    full, full_history = run(tmp_path / "a.pt", 0)
    with pytest.raises(Killed):
        run(tmp_path / "b.pt", 0, kill=(1, 1))
    resumed, history = run(tmp_path / "b.pt", 7)
    assert history == full_history
    _assert_same(_state(full), _state(resumed))


def test_callback_state_carries_over_an_end_of_epoch_resume(tmp_path):
    """A step counter (like ChipCalibration's refresh schedule) continues after a run killed
    between epochs, as in the uninterrupted run."""
    path = tmp_path / "run.pt"
    batches = _augmented()
    first = _trainer(analog_mlp(0), 2, path, callbacks=[StepCounter(), KillAt(1, 0)], every=None)
    with pytest.raises(Killed):
        first.fit(batches)
    assert "steps_done" not in torch.load(path, weights_only=True)  # an end-of-epoch file
    counter = StepCounter()
    _trainer(analog_mlp(99), 2, path, callbacks=[counter], every=None).fit(batches)
    assert counter.steps == 14
