"""`NormalizedInput`: a model that takes images in [0, 1] and normalises them itself.

    y = net((x - mean_c) / std_c)      per channel c

so a shipped model takes images exactly as :func:`analogtorch.data.load_dataset` returns
them. ``mean`` and ``std`` are buffers (saved and loaded with the weights); the
normalisation is digital pre-processing, not an analog layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NormalizedInput(nn.Module):
    """``net`` behind a per-channel normalisation of its (N, C, H, W) input.

    Args:
        net: the model that expects normalised inputs.
        mean, std: per-channel statistics (C values; std > 0). Default 0 and 1 (identity).
    """

    def __init__(
        self, net: nn.Module, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)
    ) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} differ in length")
        if not (torch.isfinite(mean_t).all() and (std_t > 0).all() and torch.isfinite(std_t).all()):
            raise ValueError(f"mean {tuple(mean)} must be finite and std {tuple(std)} > 0")
        self.net = net
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
