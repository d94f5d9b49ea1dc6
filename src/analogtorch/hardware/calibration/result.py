"""All fits together: ``calibrate`` and its :class:`CalibrationResult`.

``calibrate(measurements, base)`` runs one fitter per measurement kind present (see
:mod:`analogtorch.hardware.measurements` for the CSV schema) and returns a
:class:`CalibrationResult` whose ``.profile`` is ``base.replace(...)`` with the fitted fields.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...files import write_atomic
from ..measurements import Measurements
from ..profile import HardwareProfile
from .base import Estimate, _Fit
from .drift import fit_drift
from .ir_drop import fit_ir_drop
from .programming import fit_programming
from .transfer import TransferFit, fit_transfer

__all__ = ["CalibrationResult", "calibrate"]


@dataclass(frozen=True)
class CalibrationResult:
    """The calibrated profile, the base it started from and each kind's fit."""

    profile: HardwareProfile
    base: HardwareProfile
    fits: dict[str, _Fit]
    source: str = "<arrays>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "base_profile": self.base.name,
            "fits": {kind: fit.to_dict() for kind, fit in self.fits.items()},
            "profile": self.profile.model_dump(mode="json"),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON record (fitted parameters, standard errors, goodness of fit, profile)."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_atomic(path, text)
        return text

    def rows(self) -> list[tuple[str, str, Estimate | str, Any]]:
        """(kind, parameter, fitted estimate, base value) for every fitted parameter."""
        out: list[tuple[str, str, Estimate | str, Any]] = []
        for kind, fit in self.fits.items():
            if isinstance(fit, TransferFit):
                out.append((kind, "transfer_curve", fit.curve, self.base.transfer_curve))
            for name, estimate in fit.parameters().items():
                base_name, _, index = name.partition("[")
                base_value = getattr(self.base, base_name)
                if index:
                    k = int(index.rstrip("]"))
                    base_value = base_value[k] if k < len(base_value) else None
                out.append((kind, name, estimate, base_value))
        return out

    def plot(self, path: str | Path) -> Path:
        """Fit vs data, one panel per kind (two for drift: mean and read-noise variance)."""
        from ...figures import pyplot, save_figure, suptitle

        plt = pyplot()
        n_panels = sum(fit.n_panels for fit in self.fits.values())
        n_cols = min(n_panels, 3)
        n_rows = math.ceil(n_panels / n_cols)
        fig, axes = plt.subplots(
            n_rows, n_cols, figsize=(4.6 * n_cols, 3.9 * n_rows), squeeze=False
        )
        flat = list(axes.flat)
        for ax in flat[n_panels:]:
            ax.set_visible(False)
        for fit in self.fits.values():
            fit.plot(flat[: fit.n_panels])
            flat = flat[fit.n_panels :]
        suptitle(fig, f"calibration of {self.base.name!r} from {Path(self.source).name}")
        fig.tight_layout()
        return save_figure(fig, path)


def calibrate(
    measurements: Measurements,
    base: HardwareProfile,
    *,
    transfer_curve: str | None = None,
    prog_noise_degree: int = 2,
) -> CalibrationResult:
    """Fit every measurement kind present and return the calibrated profile with the fits.

    Args:
        measurements: from :func:`load_measurements` (or built from arrays).
        base: the profile to start from; supplies ``g_max_siemens``, ``drift_t0_seconds``
            and ``v_read_volts``, and every field no measurement informs.
        transfer_curve: ``"sinh"`` or ``"tanh"`` to force the curve; ``None`` picks the one
            with the smaller residual.
        prog_noise_degree: degree (0-2) of the programming-noise polynomial.
    """
    if not isinstance(base, HardwareProfile):
        raise TypeError(f"base must be a HardwareProfile, got {type(base).__name__}")
    if not measurements.kinds:
        raise ValueError(f"{measurements.source}: no measurements to calibrate from")
    fits: dict[str, _Fit] = {}
    if measurements.drift is not None:
        fits["drift"] = fit_drift(measurements.drift, base.g_max_siemens, base.drift_t0_seconds)
    if measurements.programming is not None:
        fits["programming"] = fit_programming(
            measurements.programming, base.g_max_siemens, prog_noise_degree
        )
    if measurements.transfer is not None:
        fits["transfer"] = fit_transfer(measurements.transfer, base.v_read_volts, transfer_curve)
    if measurements.ir_drop:
        fits["ir_drop"] = fit_ir_drop(measurements.ir_drop)
    changes: dict[str, Any] = {}
    for fit in fits.values():
        changes.update(fit.profile_changes())
    source_name = Path(measurements.source).name
    profile = base.replace(
        name=f"{base.name}-calibrated",
        description=f"{base.name} calibrated from {source_name} ({', '.join(fits)})",
        **changes,
    )
    return CalibrationResult(profile=profile, base=base, fits=fits, source=measurements.source)
