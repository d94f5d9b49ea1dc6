"""The interface every image generator shares (analog AIS samplers and digital baselines).

A generator maps a latent draw ``z ~ p(z)`` to an image with pixels in ``[0, 1]``:

    x = G(z),   z = gen.sample_latent(n, generator)  (n, latent_dim),   x: (n, C, H, W).

The latent distribution is the generator's own (Gaussian for :class:`MLPGenerator`, initial
phases or spins for the analog systems); every draw takes an explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..devices import module_device


@runtime_checkable
class ImageGenerator(Protocol):
    """Duck-typed generator: ``image_shape`` (C, H, W), ``latent_dim``, ``sample_latent``, call.

    ``__call__(z)`` maps latents ``(n, latent_dim)`` to images ``(n, C, H, W)`` in ``[0, 1]``;
    it must be differentiable in the generator's parameters (WGAN training backpropagates
    through it). Any noise inside the dynamics is the generator's own business.
    """

    image_shape: tuple[int, int, int]
    latent_dim: int

    def sample_latent(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...


def count_parameters(module: nn.Module | ImageGenerator, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` unless told otherwise)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def sample_images(gen: ImageGenerator, n: int, *, seed: int, batch_size: int = 256) -> torch.Tensor:
    """``n`` images ``(n, C, H, W)`` on the CPU, from latents drawn with ``seed``.

    The latents are drawn in one call from a CPU ``torch.Generator`` seeded with ``seed``,
    then pushed through ``gen`` in batches of ``batch_size`` (no gradients, eval mode; the
    module's train/eval mode is restored afterwards), so the images do not depend on
    ``batch_size``.
    """
    if n < 0:
        raise ValueError(f"n={n}: must be >= 0")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    z = gen.sample_latent(n, torch.Generator().manual_seed(seed))
    device = module_device(gen)
    was_training = getattr(gen, "training", None)
    if isinstance(gen, nn.Module):
        gen.eval()
    try:
        chunks = [
            gen(z[start : start + batch_size].to(device)).detach().float().cpu()
            for start in range(0, n, batch_size)
        ]
    finally:
        if isinstance(gen, nn.Module) and was_training is not None:
            gen.train(was_training)
    if not chunks:
        return torch.empty(0, *gen.image_shape)
    return torch.cat(chunks)
