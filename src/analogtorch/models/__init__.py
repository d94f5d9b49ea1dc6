"""Reference architectures, by name, for the energy model, studies and the CLI.

Each :class:`ModelSpec` names a builder and the per-sample input shape it expects
(``(C, H, W)``, no batch dimension); :func:`build_model` instantiates one from a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from ..hardware.neuron import MOSNeuron
from ..nn.activation_fit import neuron_activation
from .cnn import build_small_cnn
from .equilibrium import TiedFixedPointNet
from .mlp import build_mlp
from .normalize import NormalizedInput
from .resnet import build_resnet_cifar

# The transistor neuron of "mnist-mlp-stretched": +-100 mV of gate overdrive spans |h| <= 16,
# the range of the hidden pre-activations (98-99.8 % of them in the ReLU MLP trained by the
# mnist-mlp recipe, measured), so the fit covers where the network operates.
MNIST_NEURON = MOSNeuron(input_range=16.0)


@dataclass(frozen=True)
class ModelSpec:
    """A named reference architecture.

    ``build(seed=...)`` returns a freshly initialised model that maps an input of shape
    ``(N, *input_shape)`` to logits ``(N, num_classes)``.
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    build: Callable[..., nn.Module]


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "demo-mlp",
            "MLP 64-128-128-10 on scikit-learn's 8x8 digits (the `analogtorch demo` model)",
            (1, 8, 8),
            partial(build_mlp, 64, (128, 128), 10),
        ),
        ModelSpec(
            "mnist-mlp",
            "MLP 784-256-256-10 on MNIST",
            (1, 28, 28),
            partial(build_mlp, 784, (256, 256), 10),
        ),
        ModelSpec(
            "mnist-mlp-stretched",
            "MLP 784-256-256-10 on MNIST, each ReLU replaced by a stretched exponential "
            "-log(1 + a e^-x) fitted to a transistor neuron (EKV, hardware/neuron.py)",
            (1, 28, 28),
            partial(
                build_mlp, 784, (256, 256), 10, activation=partial(neuron_activation, MNIST_NEURON)
            ),
        ),
        ModelSpec(
            "mnist-cnn",
            "small CNN (conv16-conv32-fc128) on MNIST",
            (1, 28, 28),
            partial(build_small_cnn, 1, 10, 16, 28),
        ),
        ModelSpec(
            "cifar-resnet20",
            "ResNet-20 (He et al. 2016, projection shortcuts) on CIFAR-10",
            (3, 32, 32),
            partial(build_resnet_cifar, 20, 16, 10, 3),
        ),
        ModelSpec(
            "cifar-resnet20x2",
            "ResNet-20 at twice the width (32-64-128 channels, 1.1 M parameters) on CIFAR-10",
            (3, 32, 32),
            partial(build_resnet_cifar, 20, 32, 10, 3),
        ),
        ModelSpec(
            "deq-mlp",
            "weight-tied equilibrium net 784 -> z* = relu(W z* + u), width 256 -> 10 on MNIST",
            (1, 28, 28),
            partial(TiedFixedPointNet, 784, 256, 10),
        ),
    )
}


def build_model(name: str, *, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """The registered model ``name`` initialised from ``seed``, and its per-sample input shape."""
    spec = MODELS.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return spec.build(seed=seed), spec.input_shape


__all__ = [
    "MNIST_NEURON",
    "MODELS",
    "ModelSpec",
    "NormalizedInput",
    "TiedFixedPointNet",
    "build_mlp",
    "build_model",
    "build_resnet_cifar",
    "build_small_cnn",
]
