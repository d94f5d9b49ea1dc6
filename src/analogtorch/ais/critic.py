"""`ConvCritic`: the digital WGAN critic D: images (n, C, H, W) -> scores (n,).

A DCGAN-style stack (Radford et al. 2016) as used for MNIST by Gulrajani et al. 2017,
"Improved Training of Wasserstein GANs": 3×3 convolutions with LeakyReLU(0.2), each
downsampling by 2 (``H -> ceil(H / 2)``), then one linear read-out. No batch norm: the
gradient penalty constrains ‖∇_x D(x)‖ per sample, and batch norm makes each score depend
on the whole batch (the paper uses none, or layer norm, in the critic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class ConvCritic(nn.Module):
    """``D(x) = w · φ(x) + b`` with ``φ`` a stack of strided convolutions.

    Args:
        image_shape: ``(C, H, W)``; any size ≥ 1 (28×28 → 14 → 7 → 4, 14×14 → 7 → 4 → 2).
        width: channels of the first convolution; layer ``k`` has ``width · 2^k``.
        n_downsample: number of stride-2 convolutions.
    """

    def __init__(self, image_shape: Sequence[int], width: int = 64, n_downsample: int = 3) -> None:
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape={image_shape!r}: expected (C, H, W) with positive sizes")
        if width < 1:
            raise ValueError(f"width={width}: must be >= 1")
        if n_downsample < 0:
            raise ValueError(f"n_downsample={n_downsample}: must be >= 0")
        self.image_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.width = width
        self.n_downsample = n_downsample
        channels, height, wide = shape
        layers: list[nn.Module] = []
        for k in range(n_downsample):
            out = width * 2**k
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels, height, wide = out, math.ceil(height / 2), math.ceil(wide / 2)
        self.features = nn.Sequential(*layers)
        self.readout = nn.Linear(channels * height * wide, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (n, *{self.image_shape})")
        return self.readout(self.features(x).flatten(1)).squeeze(1)

    def extra_repr(self) -> str:
        return (
            f"image_shape={self.image_shape}, width={self.width}, n_downsample={self.n_downsample}"
        )
