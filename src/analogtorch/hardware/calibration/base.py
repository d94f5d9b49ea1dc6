"""Shared pieces of the calibration fits: :class:`Estimate`, the fit interface and helpers.

Every fit reports standard errors (from the Fisher information / Gauss-Newton curvature)
and goodness of fit; a fitted value outside a profile field's range is clipped to it when
the profile is built (the fit itself keeps the raw value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

__all__ = ["Estimate"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A fitted value and its standard error (NaN when not available)."""

    value: float
    stderr: float = math.nan

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "stderr": None if math.isnan(self.stderr) else self.stderr}

    def __str__(self) -> str:
        if math.isnan(self.stderr):
            return f"{self.value:.4g}"
        return f"{self.value:.4g} ± {self.stderr:.2g}"


class _Fit:
    """Shared interface of the per-kind fit results."""

    kind: ClassVar[str]
    n_panels: ClassVar[int] = 1

    def parameters(self) -> dict[str, Estimate]:
        """Fitted values keyed by profile field name (``name[k]`` for a tuple entry)."""
        raise NotImplementedError

    def goodness(self) -> dict[str, float]:
        """Goodness-of-fit numbers (n, R^2, RMS residual and/or log-likelihood)."""
        raise NotImplementedError

    def profile_changes(self) -> dict[str, Any]:
        """The ``HardwareProfile.replace`` arguments this fit implies."""
        raise NotImplementedError

    def plot(self, axes: list[Any]) -> None:
        """Draw fit vs data on ``n_panels`` matplotlib axes."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": {k: e.to_dict() for k, e in self.parameters().items()},
            "goodness": {k: _finite_or_none(v) for k, v in self.goodness().items()},
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _r2(y: Array, residual: Array) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum(residual**2)) / total if total > 0 else math.nan


def bounded(name: str, estimate: Estimate, low: float, high: float, unit: str = "") -> float:
    """A fitted value inside the profile's range ``[low, high]``.

    A value outside by less than three standard errors is statistically at the bound and is
    clipped to it (e.g. a drift exponent of -0.001 ± 0.002 is 0). Farther out, or not finite,
    the measurements do not follow the model (outliers, wrong units, another device): that
    is an error naming the parameter, never a silently clipped profile.
    """
    value = estimate.value
    slack = 3 * estimate.stderr if math.isfinite(estimate.stderr) else 0.0
    if not math.isfinite(value) or not low - slack <= value <= high + slack:
        raise ValueError(
            f"calibration: fitted {name} = {estimate}{unit} is outside its physical range "
            f"[{low:g}, {high:g}]{unit}; the measurements do not follow the model (check for "
            "outliers, units and mixed-up devices)"
        )
    return float(min(max(value, low), high))
