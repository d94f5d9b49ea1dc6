"""`trained_once`: a model trained once and kept in a file, shared by every cell that
starts from it (the FP32 model of a seed, a DEQ's digital training, a HIL surrogate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_path, exclusive


def trained_once(model: nn.Module, path: Path, train: Callable[[], None]) -> nn.Module:
    """``model`` with the state kept in ``path``: loaded when the file exists, else trained
    in place by ``train()`` and saved (atomically, ``weights_only``-loadable).

    The check and the training hold :func:`~analogtorch.files.exclusive` on ``path``:
    cells running at once (Ray workers sharing the run folder) train the model once — the
    others wait, then load it — instead of training it side by side over one checkpoint."""
    with exclusive(path):
        if path.exists():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model
        train()
        with atomic_path(path) as partial:
            torch.save(model.state_dict(), partial)
    return model
