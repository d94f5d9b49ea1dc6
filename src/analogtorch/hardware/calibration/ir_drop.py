"""IR drop (``fit_ir_drop``).

Least squares of the measured bit-line currents against ``nodal.solve_crossbar(G, V, r)`` in
the wire-segment resistance ``r`` (bounded, log-space).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize_scalar

from ..measurements import CrossbarMeasurement
from ..nodal import solve_crossbar
from .base import Array, Estimate, _Fit, _r2, bounded

__all__ = ["IRDropFit", "fit_ir_drop"]


@dataclass(frozen=True)
class IRDropFit(_Fit):
    """Wire-segment resistance from crossbar currents against the exact nodal solve."""

    kind: ClassVar[str] = "ir_drop"

    wire_resistance_ohm: Estimate
    n: int
    r2: float
    rms_residual_a: float
    rms_ideal_a: float  # the same with r = 0: what IR drop explains
    curves: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)

    def parameters(self) -> dict[str, Estimate]:
        return {"wire_resistance_ohm": self.wire_resistance_ohm}

    def goodness(self) -> dict[str, float]:
        return {
            "n": self.n,
            "r2": self.r2,
            "rms_residual_a": self.rms_residual_a,
            "rms_residual_ideal_a": self.rms_ideal_a,
        }

    def profile_changes(self) -> dict[str, Any]:
        resistance = bounded("wire_resistance_ohm", self.wire_resistance_ohm, 0.0, 1e4, " ohm")
        return {"wire_resistance_ohm": resistance}

    def plot(self, axes: list[Any]) -> None:
        (ax,) = axes
        c = self.curves
        measured_ua = c["measured_a"] * 1e6
        ax.plot(
            measured_ua, (c["ideal_a"] - c["measured_a"]) * 1e9, ".", ms=3, label="ideal, r = 0"
        )
        ax.plot(
            measured_ua,
            (c["model_a"] - c["measured_a"]) * 1e9,
            ".",
            ms=3,
            label=f"fit, r = {self.wire_resistance_ohm.value:.3g} Ω",
        )
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("measured bit-line current (µA)")
        ax.set_ylabel("model − measured current (nA)")
        ax.set_title("IR drop (exact nodal solve)", fontsize=9)
        ax.legend(fontsize=8)


def fit_ir_drop(
    crossbars: tuple[CrossbarMeasurement, ...] | list[CrossbarMeasurement],
    bounds_ohm: tuple[float, float] = (1e-4, 1e4),
) -> IRDropFit:
    """Least-squares wire resistance, ``nodal.solve_crossbar`` as the forward model."""
    if not crossbars:
        raise ValueError("IR-drop fit needs at least one crossbar measurement")
    measured = np.concatenate([xb.current_a.ravel() for xb in crossbars])

    def model(r: float) -> Array:
        return np.concatenate(
            [solve_crossbar(xb.conductance_siemens, xb.voltage_v, r).ravel() for xb in crossbars]
        )

    best = minimize_scalar(
        lambda u: float(np.sum((measured - model(math.exp(u))) ** 2)),
        bounds=(math.log(bounds_ohm[0]), math.log(bounds_ohm[1])),
        method="bounded",
        options={"xatol": 1e-7},
    )
    r = math.exp(float(best.x))
    ideal = model(0.0)
    fitted = model(r)
    sse = float(np.sum((measured - fitted) ** 2))
    if sse >= float(np.sum((measured - ideal) ** 2)):
        r, fitted, sse = 0.0, ideal, float(np.sum((measured - ideal) ** 2))
    step = 1e-4 * max(r, bounds_ohm[0])
    jac = (model(r + step) - model(max(r - step, 0.0))) / (r + step - max(r - step, 0.0))
    dof = max(measured.size - 1, 1)
    se = math.sqrt(sse / dof / float(np.sum(jac**2))) if np.any(jac) else math.nan
    return IRDropFit(
        wire_resistance_ohm=Estimate(r, se),
        n=int(measured.size),
        r2=_r2(measured, measured - fitted),
        rms_residual_a=math.sqrt(sse / measured.size),
        rms_ideal_a=float(np.sqrt(np.mean((measured - ideal) ** 2))),
        curves={"measured_a": measured, "model_a": fitted, "ideal_a": ideal},
    )
