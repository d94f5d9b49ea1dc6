"""`Trainer`: a fit loop with callbacks, checkpoint + resume, progress and divergence stops.

Determinism: everything random in an epoch is drawn from seeds derived from
``(seed, epoch)`` — the batch order (:func:`epoch_batches`), the analog layers' noise streams
(re-seeded at each epoch start) and ``trainer.generator`` (handed to the loss for its own
draws). A run resumed from the checkpoint of epoch ``k`` therefore continues exactly as
the uninterrupted run would, and ends with the same numbers.

Mid-epoch checkpoints (every ``checkpoint_every_s`` seconds, after a step) keep the same
promise: they also hold where every random stream stands (the trainer's generator, the
model's noise streams, the callbacks' own state), and a resumed run starts the epoch as
usual, restores that state and draws, without training on them, the batches already done,
which replays the batch source's own draws (augmentation). A model with a module that has
``reseed`` but cannot save its streams (no ``noise_state``,
:class:`~analogtorch.hardware.random.SavableNoise`) gets end-of-epoch checkpoints only. File
layout: :mod:`~analogtorch.train.checkpoint`.

Divergence: a non-finite loss (or gradient) stops training with
:class:`TrainingDivergedError` naming the epoch and step; the bad
step is not applied (parameters, optimizer state and buffers such as BatchNorm statistics
are those of the last good step) and the checkpoint on disk stays the last one saved.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..devices import module_device
from ..hardware.random import derive_seed, noise_state, seed_noise
from ..nn.base import ProfileMismatchWarning
from ..progress import progress_bar
from .checkpoint import MidEpoch, epoch_state, load_callback_states, step_state, write_checkpoint

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
BatchSource = Callable[[int], Iterable[Batch]]


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient became NaN or infinite; the message says where and what to
    try."""


class Callback(Protocol):
    """Hooks a :class:`Trainer` calls; implement any subset (missing ones are skipped).

    A run resumed inside an epoch calls ``on_epoch_start`` but not ``on_step_end`` for the
    steps already done. A callback whose ``on_step_end`` keeps state of its own (a counter,
    a generator) adds ``state_dict()`` / ``load_state_dict(state)``, saved in every
    checkpoint and restored on resume (after ``on_epoch_start`` inside an epoch, before the
    next epoch's start otherwise); one that sets state derived from
    ``(epoch, step)`` outside the model and optimizer adds
    ``on_resume(trainer, epoch, steps_done)``, called once the state is restored.
    """

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_step_end(self, trainer: Trainer, epoch: int, step: int) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None: ...


def epoch_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0, shuffle: bool = True
) -> BatchSource:
    """``epoch -> batches`` with an order that depends only on ``(seed, epoch)``."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and equally long, got {len(x)}, {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")

    def batches(epoch: int) -> Iterable[Batch]:
        if shuffle:
            gen = torch.Generator().manual_seed(derive_seed(seed, "batches", epoch))
            order = torch.randperm(len(x), generator=gen)
        else:
            order = torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            yield x[index], y[index]

    return batches


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(model, x, y) -> (loss, logs)``.

    Args:
        epochs: number of epochs (≥ 1).
        callbacks: objects with ``on_epoch_start`` / ``on_step_end`` / ``on_epoch_end``.
        checkpoint: file to write after every epoch (model, optimizer, history) and, every
            ``checkpoint_every_s``, after a step; with ``fit(resume=True)`` an existing file
            is loaded and training continues where it was written, exactly as the
            uninterrupted run (module docstring).
        checkpoint_every_s: wall time (seconds) between mid-epoch checkpoints (``None``:
            end of epoch only).
        seed: root of every seed used (see the module docstring).
        max_grad_norm: clip the gradient norm (``None``: no clipping).
    ``history`` holds one record per finished epoch: the mean of each logged value.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        callbacks: Sequence[object] = (),
        checkpoint: str | Path | None = None,
        checkpoint_every_s: float | None = 600.0,
        seed: int = 0,
        max_grad_norm: float | None = None,
        label: str = "model",
        show_progress: bool = False,
    ) -> None:
        if epochs < 1:
            raise ValueError(f"epochs={epochs}: need at least 1")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={max_grad_norm}: must be > 0 or None")
        if checkpoint_every_s is not None and not checkpoint_every_s > 0:
            raise ValueError(
                f"checkpoint_every_s={checkpoint_every_s}: must be > 0 seconds or None"
            )
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.epochs = epochs
        self.callbacks = list(callbacks)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every_s = checkpoint_every_s
        self._saved_at = time.monotonic()
        self.seed = seed
        self.max_grad_norm = max_grad_norm
        self.label = label
        self.show_progress = show_progress
        self.history: list[dict[str, float]] = []
        self.generator = torch.Generator()

    def _call(self, hook: str, *args: object) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, *args)

    def _save(self, epoch: int) -> None:
        if self.checkpoint is None:
            return
        write_checkpoint(self.checkpoint, epoch_state(self, epoch))
        self._saved_at = time.monotonic()

    def _save_step(self, epoch: int, steps_done: int, sums: dict[str, float], count: int) -> None:
        """A mid-epoch checkpoint when one is due and the model's streams can be saved."""
        if self.checkpoint is None or self.checkpoint_every_s is None:
            return
        if time.monotonic() - self._saved_at < self.checkpoint_every_s:
            return
        noise = noise_state(self.model)
        if noise is None:
            return  # some module cannot save its streams: a resume would not be exact
        write_checkpoint(self.checkpoint, step_state(self, epoch, steps_done, sums, count, noise))
        self._saved_at = time.monotonic()

    def _resume(self) -> tuple[int, MidEpoch | None]:
        """Load the checkpoint if there is one: the first epoch still to run, and the state
        to restore once it has started when the checkpoint was written inside it."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return 0, None
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        with warnings.catch_warnings():
            # this run's own checkpoint: a noise or precision schedule had set the layers'
            # profile of that step, and sets it again at the next one
            warnings.simplefilter("ignore", ProfileMismatchWarning)
            self.model.load_state_dict(state["model"])
        self.history = list(state["history"])
        if "steps_done" in state:
            return int(state["epoch"]), MidEpoch.from_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        if "callbacks" in state:  # files of older versions hold no callback state
            load_callback_states(self, state["callbacks"])
        return int(state["epoch"]) + 1, None

    def _rates(self) -> str:
        rates = sorted({group["lr"] for group in self.optimizer.param_groups})
        return "lr=" + ", ".join(f"{rate:g}" for rate in rates)

    def _kept(self) -> str:
        if self.checkpoint is None:
            return ""
        return f" and {self.checkpoint} keeps the last state saved"

    def _step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> dict[str, float]:
        # The forward updates buffers (BatchNorm statistics) before the loss is known: a step
        # that diverges puts them back, so the model is exactly that of the last good step.
        buffers = list(self.model.buffers())
        saved = [b.detach().clone() for b in buffers]
        try:
            return self._apply_step(x, y, epoch, step)
        except TrainingDivergedError:
            with torch.no_grad():
                for buffer, value in zip(buffers, saved, strict=True):
                    buffer.copy_(value)
            raise

    def _apply_step(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int
    ) -> dict[str, float]:
        loss, logs = self.loss_fn(self.model, x, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"{self.label}: loss is {value} at epoch {epoch}, step {step}; the step was not "
                f"applied{self._kept()}. Lower the learning rate ({self._rates()}) or the noise "
                "level (for an equilibrium model: raise the contraction margin)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        else:
            grads = [p.grad.detach().norm() for p in params if p.grad is not None]
            norm = torch.stack(grads).norm() if grads else torch.zeros(())
        if not torch.isfinite(norm):
            raise TrainingDivergedError(
                f"{self.label}: gradient norm is {float(norm)} at epoch {epoch}, step {step}; "
                f"the step was not applied{self._kept()}. Lower the learning rate "
                f"({self._rates()}) or set max_grad_norm"
            )
        self.optimizer.step()
        return {"loss": value, **logs}

    def fit(self, batches: BatchSource, *, resume: bool = True) -> list[dict[str, float]]:
        """Run the remaining epochs; returns ``history`` (one record per epoch)."""
        first, mid = self._resume() if resume else (0, None)
        device = module_device(self.model)  # batches come to the model (e.g. CPU data, GPU model)
        self.model.train()
        self._saved_at = time.monotonic()
        with progress_bar(self.show_progress) as bar:
            task = bar.add_task(f"training {self.label}", total=self.epochs, completed=first)
            for epoch in range(first, self.epochs):
                seed_noise(self.model, derive_seed(self.seed, "noise", epoch))
                self.generator.manual_seed(derive_seed(self.seed, "loss", epoch))
                self._call("on_epoch_start", epoch)
                self.model.train()
                sums: dict[str, float] = {}
                count = skip = 0
                if mid is not None:
                    mid.restore(self)
                    sums, count, skip = mid.sums, mid.count, mid.steps_done
                    self._call("on_resume", epoch, skip)
                    mid = None
                for step, (x, y) in enumerate(batches(epoch)):
                    if step < skip:
                        continue  # drawn, not trained on: replays the source's draws
                    logs = self._step(_to(x, device), _to(y, device), epoch, step)
                    for key, value in logs.items():
                        sums[key] = sums.get(key, 0.0) + value * len(y)
                    count += len(y)
                    self._call("on_step_end", epoch, step)
                    self._save_step(epoch, step + 1, sums, count)
                record = {"epoch": float(epoch), **{k: v / max(count, 1) for k, v in sums.items()}}
                self._call("on_epoch_end", epoch, record)
                self.history.append(record)
                self._save(epoch)
                bar.advance(task)
        self.model.eval()
        return self.history


def _to(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch tensor on ``device`` (itself when it is there already; other values as they are)."""
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
