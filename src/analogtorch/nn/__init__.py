"""Analog layers, model conversion, stochastic residual layers and device activations."""

from ..hardware.random import seed_noise
from .activations import DeviceActivation, StretchedExponential
from .base import AnalogLayerMixin, analog_layers, set_eval_noise
from .conv import AnalogConv2d
from .convert import convert
from .linear import AnalogLinear
from .quantized import QuantizedLinear
from .residual import PerturbedLayer, StochasticResidual

__all__ = [
    "AnalogConv2d",
    "AnalogLayerMixin",
    "AnalogLinear",
    "DeviceActivation",
    "PerturbedLayer",
    "QuantizedLinear",
    "StochasticResidual",
    "StretchedExponential",
    "analog_layers",
    "convert",
    "seed_noise",
    "set_eval_noise",
]
