"""Checkpoint files of :class:`~.trainer.Trainer`: what they hold and how a run resumes.

A checkpoint is one ``torch.save`` dict (loadable with ``weights_only=True``), written to a
temporary file and renamed over ``<file>`` (:func:`~analogtorch.files.atomic_path`), so a
crash never leaves a torn file.

- End of epoch: ``epoch`` (finished), ``model``, ``optimizer``, ``history`` and
  ``callbacks`` (the ``state_dict()`` of each callback that has one: a step counter or the
  calibration rounds of a callback carry over epochs; files written before this key load
  without it). A run resumes at the start of ``epoch + 1``.
- Mid-epoch: the same keys with ``epoch`` in progress, plus ``steps_done`` (steps of it
  done), ``sums`` / ``count`` (the epoch's running log sums), ``generator``
  (``trainer.generator``'s state), ``noise`` (every random stream of the model,
  :func:`~analogtorch.hardware.random.noise_state`) and ``callbacks`` (the ``state_dict()``
  of each callback that has one). A run resumes by starting ``epoch`` as usual, restoring
  this state, and drawing (not training on) the first ``steps_done`` batches, which replays
  the batch source's own random draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..files import atomic_path
from ..hardware.random import load_noise_state

if TYPE_CHECKING:
    from .trainer import Trainer


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` to ``path`` atomically."""
    with atomic_path(path) as partial:
        torch.save(state, partial)


def _callback_states(trainer: Trainer) -> dict[str, Any]:
    return {
        f"{index}:{type(callback).__name__}": callback.state_dict()
        for index, callback in enumerate(trainer.callbacks)
        if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict")
    }


def load_callback_states(trainer: Trainer, states: dict[str, Any]) -> None:
    """Give each callback with ``load_state_dict`` its saved state (from
    :func:`_callback_states` of the saved run, which had the same callbacks)."""
    current = _callback_states(trainer)
    if set(current) != set(states):
        raise ValueError(
            f"checkpoint holds the state of callbacks {sorted(states)}, this "
            f"trainer has {sorted(current)}: resume with the callbacks of the saved run"
        )
    for index, callback in enumerate(trainer.callbacks):
        key = f"{index}:{type(callback).__name__}"
        if key in states:
            callback.load_state_dict(states[key])


def epoch_state(trainer: Trainer, epoch: int) -> dict[str, Any]:
    """The checkpoint of finished ``epoch`` (with the callbacks' own state)."""
    return {
        "epoch": epoch,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "history": trainer.history,
        "callbacks": _callback_states(trainer),
    }


def step_state(
    trainer: Trainer,
    epoch: int,
    steps_done: int,
    sums: dict[str, float],
    count: int,
    noise: dict[str, dict[str, object]],
) -> dict[str, Any]:
    """The checkpoint after ``steps_done`` steps of ``epoch`` (``noise``: the model's
    streams, from :func:`~analogtorch.hardware.random.noise_state`)."""
    return {
        **epoch_state(trainer, epoch),
        "steps_done": steps_done,
        "sums": dict(sums),
        "count": count,
        "generator": trainer.generator.get_state(),
        "noise": noise,
    }


@dataclass
class MidEpoch:
    """What a mid-epoch checkpoint restores once its epoch has started."""

    steps_done: int
    sums: dict[str, float]
    count: int
    optimizer: dict[str, Any]
    generator: torch.Tensor
    noise: dict[str, dict[str, object]]
    callbacks: dict[str, Any]

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MidEpoch:
        return cls(
            int(state["steps_done"]),
            dict(state["sums"]),
            int(state["count"]),
            state["optimizer"],
            state["generator"],
            state["noise"],
            state["callbacks"],
        )

    def restore(self, trainer: Trainer) -> None:
        """Put the optimizer (and the learning rate a schedule had set), the trainer's
        generator, the model's streams and the callbacks' own state where they stood."""
        trainer.optimizer.load_state_dict(self.optimizer)
        trainer.generator.set_state(self.generator)
        load_noise_state(trainer.model, self.noise)
        load_callback_states(trainer, self.callbacks)
