"""CIFAR ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2).

``depth = 6n + 2``: a 3x3 stem conv, three stages of ``n`` basic blocks with ``w, 2w, 4w``
channels (feature maps 32, 16, 8 for a 32x32 input), global average pooling and a linear
head. Each basic block is ``y = relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x))``.
The first block of stages 2 and 3 halves the resolution with stride 2 and doubles the
channels, its shortcut then being a 1x1 conv (stride 2) + BN projection (the paper's
option B; option A, zero-padded identity, has no parameters). ResNet-20/32/56 are
``n = 3/5/9``; ResNet-20 has ~0.27 M parameters. Input ``(N, C, H, W)``, output
``(N, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (identity or 1x1 projection)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """Stem, three stages of :class:`BasicBlock`, global average pool, linear head."""

    def __init__(
        self, blocks_per_stage: int, width: int, num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, width)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.stage1 = self._stage(width, width, blocks_per_stage, stride=1)
        self.stage2 = self._stage(width, 2 * width, blocks_per_stage, stride=2)
        self.stage3 = self._stage(2 * width, 4 * width, blocks_per_stage, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, num_classes)
        self.reset_parameters()

    @staticmethod
    def _stage(in_channels: int, out_channels: int, n_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_channels, out_channels, stride)]
        blocks += [BasicBlock(out_channels, out_channels) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def reset_parameters(self) -> None:
        """He et al. (2015) normal init for convs, as the paper uses; BN to (1, 0)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn(self.conv(x)))
        out = self.stage3(self.stage2(self.stage1(out)))
        return self.fc(self.flatten(self.pool(out)))


def build_resnet_cifar(
    depth: int = 20,
    width: int = 16,
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    seed: int = 0,
) -> ResNetCIFAR:
    """ResNet-``depth`` for CIFAR (``depth = 6n + 2``), initialised from ``seed``.

    The global RNG state is left untouched (:func:`torch.random.fork_rng`).
    """
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(
            f"build_resnet_cifar: depth={depth} is not a CIFAR ResNet depth; it must be "
            "6n + 2 with n >= 1 (e.g. 20, 32, 44, 56, 110)"
        )
    sizes = {"width": width, "num_classes": num_classes, "in_channels": in_channels}
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"build_resnet_cifar: {name}={value} must be >= 1")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ResNetCIFAR((depth - 2) // 6, width, num_classes, in_channels)
