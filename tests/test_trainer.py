"""`Trainer`: exact resume from a checkpoint, divergence stops, deterministic batch order."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from analogtorch.deq.hybrid import build_hybrid_deq
from analogtorch.deq.regularizers import RegularizerWeights
from analogtorch.deq.training import DEQLoss, train_hybrid
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.train.fit import TrainingDivergedError
from analogtorch.train.trainer import Trainer, epoch_batches

N, DIM = 40, 3


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, DIM, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(N, 1, generator=g)
    return x, y


def _model(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(DIM, 1)


def mse(model, x, y):
    return nn.functional.mse_loss(model(x), y), {}


def mse_with_noise(model, x, y, trainer_holder):
    """Uses the trainer's generator, so the resumed run must re-seed it identically."""
    noise = 0.01 * torch.randn(y.shape, generator=trainer_holder[0].generator)
    return nn.functional.mse_loss(model(x), y + noise), {"noise": float(noise.abs().mean())}


def _trainer(model, epochs, checkpoint, loss_fn=mse, **kwargs):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    return Trainer(model, loss_fn, optimizer, epochs=epochs, checkpoint=checkpoint, **kwargs)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("noisy_loss", [False, True])
def test_resumed_run_ends_bit_identical_to_the_uninterrupted_run(tmp_path, noisy_loss):
    x, y = _data()
    batches = epoch_batches(x, y, batch_size=8, seed=3)

    def loss_for(holder):
        if not noisy_loss:
            return mse
        return lambda m, a, b: mse_with_noise(m, a, b, holder)

    holder: list[Trainer] = []
    full = _trainer(_model(1), 4, tmp_path / "full.pt", loss_fn=loss_for(holder), seed=5)
    holder.append(full)
    full_history = full.fit(batches)

    holder2: list[Trainer] = []
    first = _trainer(_model(1), 2, tmp_path / "part.pt", loss_fn=loss_for(holder2), seed=5)
    holder2.append(first)
    assert len(first.fit(batches)) == 2

    holder3: list[Trainer] = []
    # a different initialisation: everything must come from the checkpoint
    resumed = _trainer(_model(99), 4, tmp_path / "part.pt", loss_fn=loss_for(holder3), seed=5)
    holder3.append(resumed)
    resumed_history = resumed.fit(batches, resume=True)

    assert resumed_history == full_history
    assert [r["epoch"] for r in resumed_history] == [0.0, 1.0, 2.0, 3.0]
    for a, b in zip(_params(full.model), _params(resumed.model), strict=True):
        assert torch.equal(a, b)
    # the optimizer state continued too (Adam moments and step count)
    sa, sb = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for key in sa["state"]:
        for name, value in sa["state"][key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["state"][key][name]))


def test_training_actually_fits_the_regression():
    x, y = _data()
    trainer = _trainer(_model(1), 30, None)
    history = trainer.fit(epoch_batches(x, y, batch_size=8))
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    torch.testing.assert_close(
        trainer.model.weight.detach(), torch.tensor([[1.5, -2.0, 0.5]]), atol=0.1, rtol=0
    )


def test_history_records_the_sample_weighted_mean_of_each_logged_value():
    x, y = _data()

    def loss_fn(model, xb, yb):
        return nn.functional.mse_loss(model(xb), yb), {"first": float(xb[0, 0])}

    model = _model(2)
    trainer = Trainer(model, loss_fn, torch.optim.SGD(model.parameters(), lr=0.0), epochs=1)
    batches = epoch_batches(x, y, batch_size=16, shuffle=False)  # sizes 16, 16, 8
    (record,) = trainer.fit(batches)
    expected = (16 * float(x[0, 0]) + 16 * float(x[16, 0]) + 8 * float(x[32, 0])) / 40
    assert record["first"] == pytest.approx(expected, rel=1e-6)


class NaNAt:
    """MSE, but NaN at one (epoch, step); records the parameters before every step."""

    def __init__(self, epoch: int, step: int) -> None:
        self.where = (epoch, step)
        self.epoch = 0
        self.step = 0
        self.before_bad_step = None

    def on_epoch_start(self, trainer, epoch):
        self.epoch, self.step = epoch, 0

    def on_step_end(self, trainer, epoch, step):
        self.step = step + 1

    def __call__(self, model, x, y):
        loss = nn.functional.mse_loss(model(x), y)
        if (self.epoch, self.step) == self.where:
            self.before_bad_step = _params(model)
            return loss * float("nan"), {}
        return loss, {}


class EpochEndParams:
    def __init__(self) -> None:
        self.by_epoch: dict[int, list[torch.Tensor]] = {}

    def on_epoch_end(self, trainer, epoch, record):
        self.by_epoch[epoch] = _params(trainer.model)


def test_nan_loss_stops_without_applying_the_step_and_keeps_the_last_epoch_checkpoint(tmp_path):
    x, y = _data()
    loss_fn, ends = NaNAt(epoch=2, step=3), EpochEndParams()
    model = _model(1)
    checkpoint = tmp_path / "run.pt"
    trainer = _trainer(model, 5, checkpoint, loss_fn=loss_fn, callbacks=[loss_fn, ends])
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 3"):
        trainer.fit(epoch_batches(x, y, batch_size=8))
    assert loss_fn.before_bad_step is not None
    for now, before in zip(_params(model), loss_fn.before_bad_step, strict=True):
        assert torch.equal(now, before)
    assert len(trainer.history) == 2
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 1
    assert len(state["history"]) == 2
    saved = [state["model"]["weight"], state["model"]["bias"]]
    for a, b in zip(saved, ends.by_epoch[1], strict=True):
        assert torch.equal(a, b)
    assert not list(checkpoint.parent.glob(".*partial"))  # no temporary file left behind


def test_non_finite_gradient_stops_without_applying_the_step():
    x, y = _data()
    model = _model(1)

    def loss_fn(m, xb, yb):
        # finite value (sqrt(0) = 0) but d sqrt / d at 0 is inf -> NaN gradient
        return nn.functional.mse_loss(m(xb), yb) + torch.sqrt(0.0 * m.bias.sum()), {}

    before = _params(model)
    trainer = _trainer(model, 1, None, loss_fn=loss_fn, label="tiny")
    with pytest.raises(TrainingDivergedError, match=r"tiny: gradient norm .* epoch 0, step 0"):
        trainer.fit(epoch_batches(x, y, batch_size=8))
    for a, b in zip(_params(model), before, strict=True):
        assert torch.equal(a, b)


def test_epoch_batch_order_depends_only_on_seed_and_epoch():
    x = torch.arange(20.0).reshape(20, 1)
    y = torch.arange(20)

    def order(source, epoch):
        return torch.cat([yb for _, yb in source(epoch)])

    a = epoch_batches(x, y, batch_size=6, seed=1)
    b = epoch_batches(x, y, batch_size=6, seed=1)
    # calling other epochs first (or another source) does not change an epoch's order
    order(a, 0), order(a, 5)
    assert torch.equal(order(a, 3), order(b, 3))
    assert torch.equal(order(a, 3), order(a, 3))
    assert not torch.equal(order(a, 3), order(a, 4))
    assert not torch.equal(order(a, 3), order(epoch_batches(x, y, 6, seed=2), 3))
    # each epoch is a permutation, batches keep x and y paired, the last batch is short
    assert torch.equal(order(a, 3).sort().values, y)
    sizes = [len(yb) for _, yb in a(3)]
    assert sizes == [6, 6, 6, 2]
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in a(7))


def test_unshuffled_batches_keep_the_data_order():
    x, y = torch.arange(7.0).reshape(7, 1), torch.arange(7)
    assert torch.equal(torch.cat([yb for _, yb in epoch_batches(x, y, 3, shuffle=False)(4)]), y)


@pytest.mark.parametrize(
    "args",
    [
        (torch.zeros(3, 1), torch.zeros(4), 2),
        (torch.zeros(0, 1), torch.zeros(0), 2),
        (torch.zeros(3, 1), torch.zeros(3), 0),
    ],
)
def test_epoch_batches_rejects_bad_data_or_batch_size(args):
    with pytest.raises(ValueError):
        epoch_batches(*args)


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"epochs": 2, "max_grad_norm": 0.0}])
def test_trainer_rejects_bad_settings(kwargs):
    model = _model(0)
    with pytest.raises(ValueError):
        Trainer(model, mse, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_callbacks_see_every_epoch_and_step_in_order():
    x, y = _data()
    events = []

    class Recorder:
        def on_epoch_start(self, trainer, epoch):
            events.append(("start", epoch))

        def on_step_end(self, trainer, epoch, step):
            events.append(("step", epoch, step))

    trainer = _trainer(_model(0), 2, None, callbacks=[Recorder()])
    trainer.fit(epoch_batches(x, y, batch_size=20))
    assert events == [
        ("start", 0),
        ("step", 0, 0),
        ("step", 0, 1),
        ("start", 1),
        ("step", 1, 0),
        ("step", 1, 1),
    ]
    assert not trainer.model.training  # fit leaves the model in eval mode


def test_resumed_noisy_hybrid_deq_training_is_bit_identical(tmp_path):
    """Training noise, Hutchinson probes and converter ranges all resume exactly."""
    pcm = HardwareProfile.preset("pcm")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)

    def run(epochs, checkpoint, init_seed):
        model = build_hybrid_deq(5, 3, pcm, width=4, seed=init_seed)
        loss = DEQLoss("classification", RegularizerWeights(jacobian=0.1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            history = train_hybrid(
                model,
                x,
                y,
                "classification",
                epochs=epochs,
                lr=0.05,
                batch_size=8,
                checkpoint=checkpoint,
                loss=loss,
            )
        return model, history

    full, full_history = run(3, tmp_path / "a.pt", 0)
    run(2, tmp_path / "b.pt", 0)
    resumed, resumed_history = run(3, tmp_path / "b.pt", 7)
    assert resumed_history == full_history
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_diverging_step_leaves_the_batchnorm_statistics_of_the_last_good_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    gen = torch.Generator().manual_seed(1)
    good = [(torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen))]
    bad_x = torch.randn(16, 4, generator=gen)
    bad_x[3, 0] = float("nan")  # one bad sample: NaN loss, and NaN in the batch statistics
    batches = [*good, (bad_x, good[0][1])]
    snapshots = []

    class Snapshot:
        def on_step_end(self, trainer, epoch, step):
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    def loss(net, x, y):
        return torch.nn.functional.cross_entropy(net(x), y), {}

    trainer = Trainer(
        model, loss, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, callbacks=[Snapshot()]
    )
    with pytest.raises(TrainingDivergedError, match=r"step 1.*lr=0\.1"):
        trainer.fit(lambda epoch: batches, resume=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[-1][key]), key
    assert torch.isfinite(model[1].running_mean).all()
