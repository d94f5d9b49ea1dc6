"""Transfer curve (``fit_transfer``).

``I = G v_read f(V/v_read)`` with ``f(v) = sinh(a v)/sinh(a)`` or ``tanh(a v)/tanh(a)``
(``circuit.apply_transfer_curve``), ``v_read`` the base profile's ``v_read_volts``: least
squares in ``alpha`` on the normalised current ``I/(G v_read)``; the curve with the smaller
residual wins unless one is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from ..circuit import transfer_curve
from ..measurements import TransferMeasurements
from .base import Array, Estimate, _Fit, _r2

__all__ = ["TransferFit", "fit_transfer", "transfer_function"]


def transfer_function(v: Array, curve: str, alpha: float) -> Array:
    """Normalised device I-V ``f(v)`` of the hardware model (``circuit.transfer_curve``)."""
    return transfer_curve(torch.as_tensor(v, dtype=torch.float64), curve, alpha).numpy()


@dataclass(frozen=True)
class TransferFit(_Fit):
    """Transfer-curve shape and nonlinearity ``alpha`` (``I = G v_read f(V / v_read)``)."""

    kind: ClassVar[str] = "transfer"

    curve: str
    alpha: Estimate
    n: int
    r2: float
    rms_residual: float  # normalised current I/(G v_read)
    rms_by_curve: dict[str, float]
    v_read_volts: float
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def parameters(self) -> dict[str, Estimate]:
        return {"transfer_nonlinearity": self.alpha}

    def goodness(self) -> dict[str, float]:
        return {
            "n": self.n,
            "r2": self.r2,
            "rms_residual": self.rms_residual,
            **{f"rms_{curve}": rms for curve, rms in self.rms_by_curve.items()},
        }

    def profile_changes(self) -> dict[str, Any]:
        if self.curve == "linear":
            return {"transfer_curve": "linear", "transfer_nonlinearity": 0.0}
        return {"transfer_curve": self.curve, "transfer_nonlinearity": self.alpha.value}

    def to_dict(self) -> dict[str, Any]:
        return {"transfer_curve": self.curve, **super().to_dict()}

    def plot(self, axes: list[Any]) -> None:
        (ax,) = axes
        c = self.curves
        ax.plot(c["voltage_v"], c["normalised_current"], ".", ms=3, label="data")
        grid = np.linspace(c["voltage_v"].min(), c["voltage_v"].max(), 200)
        ax.plot(
            grid,
            transfer_function(grid / self.v_read_volts, self.curve, self.alpha.value),
            "-",
            label=f"fit {self.curve}, α = {self.alpha.value:.3g}",
        )
        ax.set_xlabel("voltage V (V)")
        ax.set_ylabel("current I / (G v_read) (1)")
        ax.set_title("transfer curve", fontsize=9)
        ax.legend(fontsize=8)


def fit_transfer(
    data: TransferMeasurements, v_read_volts: float, curve: str | None = None
) -> TransferFit:
    """Least-squares ``alpha`` of a sinh or tanh curve (the better one when ``curve=None``).

    A best ``alpha`` below 1e-3 (indistinguishable from a straight line) gives ``linear``.
    """
    if curve not in (None, "sinh", "tanh"):
        raise ValueError(f"curve={curve!r}: expected 'sinh', 'tanh' or None (pick the better)")
    use = data.conductance_siemens > 0
    if np.count_nonzero(use) < 2:
        raise ValueError("transfer measurements: need two or more rows with conductance > 0")
    v = data.voltage_v[use] / v_read_volts
    y = data.current_a[use] / (data.conductance_siemens[use] * v_read_volts)

    fits: dict[str, tuple[float, float]] = {}
    for name in (curve,) if curve else ("sinh", "tanh"):
        best = minimize_scalar(
            lambda u, name=name: float(np.sum((y - transfer_function(v, name, math.exp(u))) ** 2)),
            bounds=(math.log(1e-3), math.log(10.0)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        fits[name] = (math.exp(float(best.x)), float(best.fun))
    chosen = min(fits, key=lambda k: fits[k][1])
    alpha, sse = fits[chosen]
    step = 1e-5 * alpha
    jac = (
        transfer_function(v, chosen, alpha + step) - transfer_function(v, chosen, alpha - step)
    ) / (2 * step)
    dof = max(v.size - 1, 1)
    se = math.sqrt(sse / dof / float(np.sum(jac**2))) if np.any(jac) else math.nan
    if alpha < 1.001e-3:
        chosen, alpha, se = "linear", 0.0, math.nan
        sse = float(np.sum((y - v) ** 2))
    residual = y - transfer_function(v, chosen, alpha)
    return TransferFit(
        curve=chosen,
        alpha=Estimate(alpha, se),
        n=int(v.size),
        r2=_r2(y, residual),
        rms_residual=math.sqrt(sse / v.size),
        rms_by_curve={k: math.sqrt(s / v.size) for k, (_, s) in fits.items()},
        v_read_volts=v_read_volts,
        curves={"voltage_v": data.voltage_v[use], "normalised_current": y},
    )
