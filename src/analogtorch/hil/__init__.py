"""Hardware in the loop (``at.hil``): backends, the learned twin, physics-aware training."""

from .backend import Backend, BackendInputError
from .loop import HardwareLoop
from .spice import SpiceBackend
from .surrogate_backend import SurrogateBackend
from .train import HILResult, evaluate_on_backend, hil_train, twin_train
from .twin import LayerTwin
from .virtual_chip import VirtualChip

__all__ = [
    "Backend",
    "BackendInputError",
    "HILResult",
    "HardwareLoop",
    "LayerTwin",
    "SpiceBackend",
    "SurrogateBackend",
    "VirtualChip",
    "evaluate_on_backend",
    "hil_train",
    "twin_train",
]
