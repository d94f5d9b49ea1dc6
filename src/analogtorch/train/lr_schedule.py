"""Learning-rate schedules as :class:`~analogtorch.train.trainer.Trainer` callbacks.

``CosineSchedule``: linear warm-up from 0 over ``warmup_epochs``, then
``lr(t) = lr_max (1 + cos(pi (t - warmup) / (epochs - warmup))) / 2`` down to 0, with
evaluated at the end of each step, ``t = epoch + (step + 1) / steps_per_epoch`` (Loshchilov
and Hutter 2017, SGDR without restarts). The rate depends only on (epoch, step), so a
resumed run follows the same schedule.
"""

from __future__ import annotations

import math
from typing import Any


class CosineSchedule:
    """Sets every parameter group's ``lr`` before each step (see the module docstring)."""

    def __init__(
        self, lr_max: float, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0
    ) -> None:
        if not lr_max > 0 or epochs < 1 or steps_per_epoch < 1:
            raise ValueError(
                f"CosineSchedule: lr_max={lr_max} > 0, epochs={epochs} >= 1 and "
                f"steps_per_epoch={steps_per_epoch} >= 1 are required"
            )
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs={warmup_epochs} must be in [0, epochs={epochs})")
        self.lr_max, self.epochs = lr_max, epochs
        self.steps_per_epoch, self.warmup = steps_per_epoch, warmup_epochs

    def rate(self, t: float) -> float:
        """Learning rate at fractional epoch ``t``."""
        if t < self.warmup:
            return self.lr_max * t / self.warmup
        phase = (t - self.warmup) / (self.epochs - self.warmup)
        return self.lr_max * 0.5 * (1.0 + math.cos(math.pi * min(phase, 1.0)))

    def _set(self, trainer: Any, t: float) -> None:
        for group in trainer.optimizer.param_groups:
            group["lr"] = self.rate(t)

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self._set(trainer, epoch + 1 / self.steps_per_epoch)

    def on_step_end(self, trainer: Any, epoch: int, step: int) -> None:
        self._set(trainer, epoch + (step + 2) / self.steps_per_epoch)
