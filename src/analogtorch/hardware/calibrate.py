"""Calibration: fit a :class:`HardwareProfile`'s non-idealities to device measurements.

``calibrate(measurements, base)`` runs one fitter per measurement kind present (see
:mod:`.measurements` for the CSV schema) and returns a :class:`CalibrationResult` whose
``.profile`` is ``base.replace(...)`` with the fitted fields. Conductances are normalised by
``base.g_max_siemens`` (``y = G / g_max``), times use ``t0 = base.drift_t0_seconds`` and the
transfer curve ``v_read = base.v_read_volts``. The models are those the simulator applies
(:mod:`.noise`, :mod:`.chip`, :mod:`.circuit`, :mod:`.nodal`); each lives, with its model and
fit described, in a module of :mod:`.calibration`:

* **drift and time-varying noise** (``fit_drift``): :mod:`.calibration.drift`.
* **programming noise** (``fit_programming``): :mod:`.calibration.programming`.
* **transfer curve** (``fit_transfer``): :mod:`.calibration.transfer`.
* **IR drop** (``fit_ir_drop``): :mod:`.calibration.ir_drop`.

:mod:`.calibration.result` holds ``calibrate`` and ``CalibrationResult``;
:mod:`.calibration.base` holds ``Estimate`` and the shared fit interface. This module
re-exports the public API.

Every fit reports standard errors (from the Fisher information / Gauss-Newton curvature)
and goodness of fit; a fitted value outside a profile field's range is clipped to it when
the profile is built (the fit itself keeps the raw value).
"""

from __future__ import annotations

from .calibration.base import Estimate
from .calibration.drift import DriftFit, fit_drift
from .calibration.ir_drop import IRDropFit, fit_ir_drop
from .calibration.programming import ProgrammingFit, fit_programming
from .calibration.result import CalibrationResult, calibrate
from .calibration.transfer import TransferFit, fit_transfer, transfer_function

__all__ = [
    "CalibrationResult",
    "DriftFit",
    "Estimate",
    "IRDropFit",
    "ProgrammingFit",
    "TransferFit",
    "calibrate",
    "fit_drift",
    "fit_ir_drop",
    "fit_programming",
    "fit_transfer",
    "transfer_function",
]
