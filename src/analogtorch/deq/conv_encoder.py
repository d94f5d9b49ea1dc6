"""Digital convolutional input injection ``g_θ`` of a hybrid DEQ on images.

    x (N, C·H·W) → (N, C, H, W) → [conv k×k, same padding → ReLU → 2×2 max-pool] × stages
                 → flatten → linear → u (N, width)

Every weight layer is a digital :class:`~analogtorch.nn.QuantizedConv2d` /
:class:`~analogtorch.nn.QuantizedLinear` at ``digital_bits`` (per-output-channel scale),
so the convolutions run on the digital unit and only the equilibrium core is analog (seed
002: digital layers parameterise the injection that drives the analog dynamics). Each stage
halves the height and width (floor), so an ``H × W`` image leaves ``c_last · ⌊H/2^s⌋ ·
⌊W/2^s⌋`` features for the linear map to the core's ``width``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..nn.quantized import QuantizedConv2d, QuantizedLinear


def conv_encoder(
    image_shape: Sequence[int],
    width: int,
    *,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    digital_bits: int | None = 8,
    seed: int = 0,
) -> nn.Sequential:
    """The encoder above for flat inputs of images ``image_shape = (C, H, W)``; weights drawn
    from ``seed`` (the global RNG is left untouched)."""
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape={tuple(image_shape)}: expected (channels, height, width)")
    if not channels or min(channels) < 1:
        raise ValueError(f"channels={tuple(channels)}: need at least one stage, each >= 1")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size}: must be odd (same padding) and >= 1")
    c, h, w = (int(s) for s in image_shape)
    if min(h, w) >> len(channels) < 1:
        raise ValueError(
            f"{len(channels)} pooling stages shrink a {h}×{w} image to nothing: use fewer"
        )
    layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for out in channels:
            layers += [
                QuantizedConv2d(
                    c, out, kernel_size, padding=kernel_size // 2, weight_bits=digital_bits
                ),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c, h, w = out, h // 2, w // 2
        layers += [nn.Flatten(), QuantizedLinear(c * h * w, width, weight_bits=digital_bits)]
    return nn.Sequential(*layers)
