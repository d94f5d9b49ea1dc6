"""The one hardware model: profile, quantisers, noise, crossbar circuit, surrogate, chip."""

from .chip import Chip
from .profile import HardwareProfile, ProfileError, preset_names
from .quantize import quantize
from .surrogate import surrogate_forward

__all__ = [
    "Chip",
    "HardwareProfile",
    "ProfileError",
    "preset_names",
    "quantize",
    "surrogate_forward",
]
