"""Hardware in the loop (``at.hil``): backends, the learned twin, physics-aware training."""

from .backend import Backend, BackendInputError
from .chip_calibration import ChipCalibration
from .chip_measurements import MeasurementPlan
from .loop import HardwareLoop
from .spice import SpiceBackend
from .surrogate_backend import SurrogateBackend
from .train import HILResult, calibrated_train, evaluate_on_backend, hil_train, twin_train
from .twin import LayerTwin
from .virtual_chip import VirtualChip

__all__ = [
    "Backend",
    "BackendInputError",
    "ChipCalibration",
    "HILResult",
    "HardwareLoop",
    "LayerTwin",
    "MeasurementPlan",
    "SpiceBackend",
    "SurrogateBackend",
    "VirtualChip",
    "calibrated_train",
    "evaluate_on_backend",
    "hil_train",
    "twin_train",
]
