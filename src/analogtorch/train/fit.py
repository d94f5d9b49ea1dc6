"""A minimal supervised fit loop (Adam, cross-entropy) that stops loudly on divergence."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..progress import progress_bar


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says where and what to try."""


def fit(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    label: str = "model",
    show_progress: bool = False,
) -> list[float]:
    """Train ``model`` in place with Adam on cross-entropy; returns the mean loss per epoch.

    Raises :class:`TrainingDivergedError` at the first non-finite loss (the parameters are
    those of the last good step: the bad step is not applied).
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: need at least 1")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    model.train()
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"training {label}", total=epochs)
        for epoch in range(epochs):
            total, count = 0.0, 0
            for step, (x, y) in enumerate(loader):
                loss = loss_fn(model(x), y)
                if not math.isfinite(loss.item()):
                    raise TrainingDivergedError(
                        f"{label}: loss is {loss.item()} at epoch {epoch}, step {step}; "
                        f"lower the learning rate (lr={lr}) or the noise level"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(y)
                count += len(y)
            history.append(total / count)
            bar.advance(task)
    model.eval()
    return history
