"""Analog layers and model conversion."""

from .base import AnalogLayerMixin, analog_layers, seed_noise, set_eval_noise
from .conv import AnalogConv2d
from .convert import convert
from .linear import AnalogLinear
from .quantized import QuantizedLinear

__all__ = [
    "AnalogConv2d",
    "AnalogLayerMixin",
    "AnalogLinear",
    "QuantizedLinear",
    "analog_layers",
    "convert",
    "seed_noise",
    "set_eval_noise",
]
