"""A small two-stage convolutional network, the reference CNN for MNIST-sized images.

conv3x3(w)-BN-ReLU-maxpool2 -> conv3x3(2w)-BN-ReLU-maxpool2 -> flatten -> Linear(128) -> ReLU
-> Linear(num_classes). Input ``(N, in_channels, H, H)`` with ``H = image_size``; the two
pools leave ``(N, 2w, H // 4, H // 4)`` before the classifier; output ``(N, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

CLASSIFIER_HIDDEN = 128


def build_small_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    width: int = 16,
    image_size: int = 28,
    *,
    seed: int = 0,
) -> nn.Sequential:
    """The small CNN above, initialised from ``seed`` (global RNG left untouched).

    Convolutions are 3x3 with padding 1 (size-preserving) and no bias (BatchNorm supplies
    the shift); pooling is 2x2 max with stride 2 (floor), so ``image_size`` must be >= 4.
    """
    for name, value, minimum in (
        ("in_channels", in_channels, 1),
        ("num_classes", num_classes, 1),
        ("width", width, 1),
        ("image_size", image_size, 4),
    ):
        if value < minimum:
            raise ValueError(f"build_small_cnn: {name}={value} must be >= {minimum}")
    pooled = image_size // 4
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * pooled * pooled, CLASSIFIER_HIDDEN),
            nn.ReLU(),
            nn.Linear(CLASSIFIER_HIDDEN, num_classes),
        )
