"""Multi-layer perceptron: the fully connected reference architecture.

``Flatten -> [Linear -> ReLU] * len(hidden) -> Linear``; an input of shape ``(N, *S)`` with
``prod(S) == in_features`` gives logits of shape ``(N, out_features)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def build_mlp(
    in_features: int, hidden: Sequence[int], out_features: int, *, seed: int = 0
) -> nn.Sequential:
    """MLP ``in_features -> hidden[0] -> ... -> hidden[-1] -> out_features`` with ReLU.

    h_0 = flatten(x),  h_{l+1} = relu(W_l h_l + b_l),  y = W_L h_L + b_L.

    Parameters are drawn with PyTorch's default ``nn.Linear`` initialisation from ``seed``
    inside :func:`torch.random.fork_rng`, so the global RNG state is left untouched and the
    same ``seed`` always gives bit-identical weights.
    """
    widths = [in_features, *hidden, out_features]
    for position, width in enumerate(widths):
        if width < 1:
            raise ValueError(
                f"build_mlp: layer width {width} at position {position} of {widths} must be "
                "a positive integer"
            )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in itertools.pairwise(widths[:-1]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-2], widths[-1]))
        return nn.Sequential(*layers)
