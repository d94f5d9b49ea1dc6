"""`fit`: the shortest way to train a classifier (Adam, cross-entropy) with the `Trainer`."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .trainer import Trainer, TrainingDivergedError

__all__ = ["TrainingDivergedError", "fit"]


def fit(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    label: str = "model",
    show_progress: bool = False,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` in place with Adam on cross-entropy; returns the mean loss per epoch.

    The :class:`~analogtorch.train.trainer.Trainer` loop with a re-iterable ``loader``:
    raises :class:`TrainingDivergedError` at the first non-finite loss or gradient, with the
    model (parameters and buffers) as after the last good step.
    """

    def cross_entropy(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return F.cross_entropy(net(x), y), {}

    trainer = Trainer(
        model,
        cross_entropy,
        torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay),
        epochs=epochs,
        seed=seed,
        label=label,
        show_progress=show_progress,
    )
    history = trainer.fit(lambda _epoch: loader, resume=False)
    return [record["loss"] for record in history]
