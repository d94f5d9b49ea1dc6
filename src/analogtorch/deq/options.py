"""What every fixed-point solver takes and returns: ``solve(f, z0, options) -> (z, stats)``.

A solver looks for ``z* = f(z*)`` for a batch ``z0`` of shape (batch, ...). The residual of
iterate ``z_t`` is ``‖f(z_t) − z_t‖`` per sample (``absolute``) or divided by ``‖f(z_t)‖``
(``relative``); the batch has converged when the largest per-sample residual is below
``tol``. The map may be stochastic (read noise on every evaluation) and quantised: then the
residual stops falling at a noise floor, and a solver that sees no improvement of the best
residual by a factor ``noise_floor_ratio`` for ``noise_floor_patience`` iterations stops
there with ``reason = "noise floor"`` instead of spinning to ``max_iter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ToleranceMode = Literal["absolute", "relative"]
StopReason = Literal["converged", "noise floor", "max_iter", "diverged"]


@dataclass(frozen=True)
class SolverOptions:
    """Options shared by all solvers (each solver ignores what it does not use)."""

    tol: float = 1e-4
    mode: ToleranceMode = "relative"
    max_iter: int = 50
    damping: float = 1.0  # fixed point: z <- (1 - damping) z + damping f(z)
    memory: int = 5  # Anderson / Broyden history length
    regularization: float = 1e-8  # Anderson: Tikhonov term of the least-squares solve
    noise_floor_patience: int = 5
    noise_floor_ratio: float = 0.9
    detect_noise_floor: bool = True

    def __post_init__(self) -> None:
        if not self.tol > 0:
            raise ValueError(f"tol={self.tol}: must be > 0")
        if self.mode not in ("absolute", "relative"):
            raise ValueError(f"mode={self.mode!r}: use 'absolute' or 'relative'")
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter}: must be >= 1")
        if not 0 < self.damping <= 1:
            raise ValueError(f"damping={self.damping}: must be in (0, 1]")
        if self.memory < 1:
            raise ValueError(f"memory={self.memory}: must be >= 1")
        if self.regularization < 0:
            raise ValueError(f"regularization={self.regularization}: must be >= 0")
        if self.noise_floor_patience < 1 or not 0 < self.noise_floor_ratio < 1:
            raise ValueError(
                f"noise_floor_patience={self.noise_floor_patience} must be >= 1 and "
                f"noise_floor_ratio={self.noise_floor_ratio} in (0, 1)"
            )


@dataclass
class SolverStats:
    """What a solve did: iterations (map evaluations), residual trace (largest per-sample
    residual after each iteration), whether every sample converged, why it stopped, wall
    time (s), and how many samples diverged (``reason`` is ``"diverged"`` when any did)."""

    iterations: int = 0
    residuals: list[float] = field(default_factory=list)
    converged: bool = False
    reason: StopReason = "max_iter"
    wall_time_s: float = 0.0
    diverged_samples: int = 0  # samples dropped for a non-finite value (see residual.py)

    @property
    def final_residual(self) -> float:
        return self.residuals[-1] if self.residuals else float("inf")
