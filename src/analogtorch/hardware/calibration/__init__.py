"""Calibration fitters, one module per measurement kind.

:mod:`.base` (``Estimate``, the fit interface), :mod:`.drift`, :mod:`.programming`,
:mod:`.transfer`, :mod:`.ir_drop` and :mod:`.result` (``calibrate``, ``CalibrationResult``).
The public API is :mod:`analogtorch.hardware.calibrate`.
"""
