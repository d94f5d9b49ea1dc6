"""Multi-layer perceptron: the fully connected reference architecture.

``Flatten -> [Linear -> act] * len(hidden) -> Linear`` (``act`` = ReLU unless given); an
input of shape ``(N, *S)`` with ``prod(S) == in_features`` gives logits of shape
``(N, out_features)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn


def build_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    seed: int = 0,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """MLP ``in_features -> hidden[0] -> ... -> hidden[-1] -> out_features``.

    h_0 = flatten(x),  h_{l+1} = act(W_l h_l + b_l),  y = W_L h_L + b_L,

    with ``act`` a fresh ``activation()`` after each hidden layer (default ``nn.ReLU``).

    Parameters are drawn with PyTorch's default ``nn.Linear`` initialisation from ``seed``
    inside :func:`torch.random.fork_rng`, so the global RNG state is left untouched and the
    same ``seed`` always gives bit-identical weights, whatever the activation (the
    activations are built before the weights, so one that draws random numbers does not
    shift them).
    """
    widths = [in_features, *hidden, out_features]
    for position, width in enumerate(widths):
        if width < 1:
            raise ValueError(
                f"build_mlp: layer width {width} at position {position} of {widths} must be "
                "a positive integer"
            )
    with torch.random.fork_rng():
        activations = [activation() for _ in hidden]
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Flatten()]
        for (fan_in, fan_out), act in zip(
            itertools.pairwise(widths[:-1]), activations, strict=True
        ):
            layers += [nn.Linear(fan_in, fan_out), act]
        layers.append(nn.Linear(widths[-2], widths[-1]))
        return nn.Sequential(*layers)
