"""analogtorch: train neural networks that stay accurate on analog in-memory hardware."""

from . import ais, deq, energy, hil
from .hardware import Chip, HardwareProfile, ProfileError
from .nn import (
    AnalogConv2d,
    AnalogLinear,
    convert,
    describe,
    seed_noise,
    set_eval_noise,
    unconvert,
)
from .saving import load, save
from .train import EvaluationReport, evaluate

__all__ = [
    "AnalogConv2d",
    "AnalogLinear",
    "Chip",
    "EvaluationReport",
    "HardwareProfile",
    "ProfileError",
    "ais",
    "convert",
    "deq",
    "describe",
    "energy",
    "evaluate",
    "hil",
    "load",
    "save",
    "seed_noise",
    "set_eval_noise",
    "unconvert",
]
__version__ = "0.2.0"
