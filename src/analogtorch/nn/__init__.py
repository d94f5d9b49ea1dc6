"""Analog layers, model conversion, stochastic residual layers and device activations."""

from ..hardware.random import seed_noise
from .activations import DeviceActivation, StretchedExponential
from .attention import AnalogMultiheadAttention
from .base import AnalogLayerMixin, ProfileMismatchWarning, analog_layers, set_eval_noise
from .conv import AnalogConv2d
from .conv1d import AnalogConv1d
from .conv_transpose import AnalogConvTranspose2d
from .convert import convert
from .describe import describe
from .linear import AnalogLinear
from .plan import plan_from_config
from .quantized import QuantizedConv2d, QuantizedLinear
from .recurrent import AnalogGRU, AnalogLSTM
from .residual import PerturbedLayer, StochasticResidual
from .unconvert import unconvert

__all__ = [
    "AnalogConv1d",
    "AnalogConv2d",
    "AnalogConvTranspose2d",
    "AnalogGRU",
    "AnalogLSTM",
    "AnalogLayerMixin",
    "AnalogLinear",
    "AnalogMultiheadAttention",
    "DeviceActivation",
    "PerturbedLayer",
    "ProfileMismatchWarning",
    "QuantizedConv2d",
    "QuantizedLinear",
    "StochasticResidual",
    "StretchedExponential",
    "analog_layers",
    "convert",
    "describe",
    "plan_from_config",
    "seed_noise",
    "set_eval_noise",
    "unconvert",
]
