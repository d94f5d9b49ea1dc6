"""`MLPGenerator`: the digital baseline, a multilayer perceptron from Gaussian latents.

    z ~ N(0, I_d),   h_1 = LeakyReLU(W_1 z + b_1), ...,   x = sigmoid(W_out h_L + b_out),

reshaped to ``(C, H, W)``. :func:`mlp_matching` picks the hidden width so that the parameter
count matches an analog generator's (the equal-parameter-count comparison).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..hardware.random import draw_like


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape={image_shape!r}: expected (C, H, W) with positive sizes")
    return shape  # type: ignore[return-value]


class MLPGenerator(nn.Module):
    """``z (n, latent_dim) -> sigmoid(MLP(z)) (n, C, H, W)`` with LeakyReLU(0.2) hidden layers.

    Args:
        image_shape: ``(C, H, W)`` of the output.
        latent_dim: dimension ``d`` of ``z ~ N(0, I_d)``.
        hidden: widths of the hidden layers (may be empty: a single affine map).
    Parameter count: ``sum_l (n_{l-1} + 1) n_l`` over the layers
    ``d -> hidden[0] -> ... -> C·H·W``.
    """

    def __init__(
        self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        if latent_dim < 1:
            raise ValueError(f"latent_dim={latent_dim}: must be >= 1")
        if any(w < 1 for w in hidden):
            raise ValueError(f"hidden={tuple(hidden)}: every width must be >= 1")
        self.latent_dim = int(latent_dim)
        self.hidden = tuple(int(w) for w in hidden)
        widths = [self.latent_dim, *self.hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(widths[-1], math.prod(self.image_shape)))
        self.net = nn.Sequential(*layers)

    def sample_latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``z ~ N(0, I)`` of shape ``(n, latent_dim)``, on this module's device."""
        return draw_like("normal", (n, self.latent_dim), generator, self.net[0].weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (n, {self.latent_dim})")
        return torch.sigmoid(self.net(z)).view(len(z), *self.image_shape)

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, latent_dim={self.latent_dim}, hidden={self.hidden}"

    @classmethod
    def matching(
        cls,
        n_params: int,
        image_shape: Sequence[int],
        latent_dim: int,
        depth: int = 2,
        rtol: float = 0.05,
    ) -> MLPGenerator:
        """Same as :func:`mlp_matching`."""
        return mlp_matching(n_params, image_shape, latent_dim, depth=depth, rtol=rtol)


def mlp_parameter_count(image_shape: Sequence[int], latent_dim: int, width: int, depth: int) -> int:
    """Parameters of :class:`MLPGenerator` with ``depth`` hidden layers of ``width`` units.

    With ``d = latent_dim``, ``P = C·H·W``, ``w = width``, ``L = depth ≥ 1``:

        N(w) = (L − 1) w² + (d + L + P) w + P.
    """
    d, p = latent_dim, math.prod(_check_image_shape(image_shape))
    if depth == 0:
        return (d + 1) * p
    return (depth - 1) * width**2 + (d + depth + p) * width + p


def mlp_matching(
    n_params: int,
    image_shape: Sequence[int],
    latent_dim: int,
    depth: int = 2,
    rtol: float = 0.05,
) -> MLPGenerator:
    """An :class:`MLPGenerator` with ``depth`` equal hidden layers and about ``n_params``.

    Solves ``N(w) = n_params`` (see :func:`mlp_parameter_count`) for the real root ``w*``,
    then takes whichever of the neighbouring integer widths is closest. Raises ``ValueError``
    when the closest count is off by more than ``rtol`` (relative), e.g. when ``n_params``
    is below the count of a width-1 network.
    """
    if depth < 1:
        raise ValueError(f"depth={depth}: need at least one hidden layer to match a count")
    if n_params < 1:
        raise ValueError(f"n_params={n_params}: must be >= 1")
    d, p = latent_dim, math.prod(_check_image_shape(image_shape))
    a, b, c = depth - 1, d + depth + p, p - n_params
    root = -c / b if a == 0 else (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
    candidates = {max(1, math.floor(root) + k) for k in (-1, 0, 1, 2)}
    width = min(
        candidates,
        key=lambda w: abs(mlp_parameter_count(image_shape, latent_dim, w, depth) - n_params),
    )
    got = mlp_parameter_count(image_shape, latent_dim, width, depth)
    if abs(got - n_params) > rtol * n_params:
        raise ValueError(
            f"n_params={n_params}: the closest MLP (depth={depth}, width={width}) has {got} "
            f"parameters, more than rtol={rtol} away; change depth or latent_dim, or raise rtol"
        )
    return MLPGenerator(image_shape, latent_dim, hidden=(width,) * depth)
