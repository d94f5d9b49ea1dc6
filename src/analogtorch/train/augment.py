"""Standard CIFAR augmentation in torch: random crop after zero padding, horizontal flip.

``crop_flip(x, generator)`` pads each (C, H, W) image by ``padding`` pixels of zeros on every
side, takes an H x W window at an offset drawn uniformly from ``{0, ..., 2 padding}`` in each
direction, and mirrors it left-right with probability 1/2 (He et al. 2016, §4.2). All draws
come from ``generator``, so a batch is augmented identically on every run. One gather for
the whole batch; no per-image Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from ..hardware.random import derive_seed

Batch = tuple[torch.Tensor, torch.Tensor]


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Randomly cropped and flipped copy of the image batch ``x`` (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"crop_flip: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"crop_flip: padding={padding} must be >= 0")
    n, _, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.arange(width)
    cols = torch.where(flip[:, None], cols.flip(0), cols)  # (N, W): mirrored columns
    rows = offsets[0][:, None] + torch.arange(height)  # (N, H)
    cols = offsets[1][:, None] + cols
    padded = F.pad(x, (padding, padding, padding, padding))
    batch = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def augmented(batches: Iterable[Batch], seed: int, epoch: int) -> Iterable[Batch]:
    """``batches`` with :func:`crop_flip` applied, drawn from ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "augment", epoch))
    for x, y in batches:
        yield crop_flip(x, generator), y
