"""What every solver shares: the residual, the stopping rules and the bookkeeping of a solve.

A solver evaluates the map once per iteration at its current iterate ``z_t`` and hands
``(z_t, f(z_t))`` to a :class:`SolveMonitor`, which

* drops a sample (and warns) as soon as ``f`` returns a non-finite value for it (or its
  residual overflows): it keeps its best finite iterate, the others go on, and the solve
  stops with ``"diverged"`` when no sample is left,
* records the residual ``‖f(z_t) − z_t‖`` (largest over the samples left) in the trace,
* keeps each sample's iterate with the lowest residual so far,
* stops with ``"converged"`` when that residual is below ``tol``,
* stops with ``"noise floor"`` when the best residual has not fallen by a factor
  ``noise_floor_ratio`` for ``noise_floor_patience`` consecutive iterations,
* stops with ``"max_iter"`` (and warns) after ``max_iter`` evaluations.

Whatever the reason, the solve returns the best iterate seen, so the returned ``z`` is always
finite and its residual is the smallest entry of the trace.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import torch

from analogtorch.deq.options import SolverOptions, SolverStats, ToleranceMode

FixedPointMap = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_OPTIONS = SolverOptions()  # the solvers' default (frozen, so safe to share)


def residual_norm(fz: torch.Tensor, z: torch.Tensor, mode: ToleranceMode) -> torch.Tensor:
    """Per-sample residual of iterate ``z`` (shape (batch, n)), shape (batch,).

    ``absolute``: ``‖f(z) − z‖₂``; ``relative``: ``‖f(z) − z‖₂ / ‖f(z)‖₂`` (a zero ``f(z)``
    is clamped to the smallest normal number, so an exact fixed point at 0 has residual 0).
    """
    return _residual_of_step(fz - z, fz, mode)


def _residual_of_step(g: torch.Tensor, fz: torch.Tensor, mode: ToleranceMode) -> torch.Tensor:
    """:func:`residual_norm` from the step ``g = f(z) − z`` a solver has computed anyway."""
    step = torch.linalg.vector_norm(g, dim=-1)
    if mode == "absolute":
        return step
    scale = torch.linalg.vector_norm(fz, dim=-1).clamp_min(torch.finfo(fz.dtype).tiny)
    return step / scale


def has_converged(residual: float, tol: float) -> bool:
    """The convergence test ``‖z_{t+1} − z_t‖ < tol`` on the largest per-sample residual."""
    return residual < tol


def is_finite(x: torch.Tensor) -> bool:
    """True when every entry of ``x`` is finite (no NaN, no ±inf).

    A finite sum settles it in one pass (a NaN or inf entry makes the sum NaN or inf);
    only a sum that is not finite, possibly an overflow of finite entries, is checked
    entry by entry.
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Per-sample finiteness of a (batch, n) tensor, shape (batch,) bool.

    Exact: ``0 · x`` is ±0 for every finite entry and NaN for NaN or ±inf, and a sum of
    zeros is zero (it cannot overflow), so a row of ``0 · x`` sums to 0 iff it is finite.
    (Several times faster on CPU than ``isfinite(x).all(-1)``.)
    """
    return (x * 0).sum(dim=-1) == 0


class NoiseFloorDetector:
    """Says when a residual has stopped falling.

    The detector keeps a reference residual; a new residual below ``ratio × reference``
    becomes the new reference and resets the count, anything else counts as a stalled
    iteration. ``patience`` stalled iterations in a row mean the noise floor is reached.
    Small improvements therefore add up: a residual that falls by 5 % per iteration
    resets the count every third iteration with ``ratio = 0.9``.

    A deterministic map contracting slower than ``ratio ** (1 / patience)`` per iteration
    (0.979 with the defaults) also looks like a floor; raise the patience for such maps.
    """

    def __init__(self, patience: int, ratio: float) -> None:
        self.patience = patience
        self.ratio = ratio
        self.reference = math.inf
        self.stalled = 0

    def update(self, residual: float) -> bool:
        """Feed one residual; True when the floor is reached."""
        if residual < self.ratio * self.reference:
            self.reference = residual
            self.stalled = 0
            return False
        self.stalled += 1
        return self.stalled >= self.patience


def flatten_map(
    f: FixedPointMap, z0: torch.Tensor
) -> tuple[FixedPointMap, torch.Tensor, torch.Size]:
    """Check ``f`` and ``z0`` and view the problem per sample as (batch, n).

    Returns the flat map, the flat ``z0`` and the original shape (to view the result back).
    """
    if not callable(f):
        raise TypeError(f"f={f!r}: must be a callable z -> f(z)")
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"z0 is a {type(z0).__name__}: must be a torch.Tensor")
    if not z0.is_floating_point():
        raise TypeError(f"z0.dtype={z0.dtype}: must be a floating dtype (float32, float64)")
    if z0.dim() < 1 or z0.shape[0] == 0 or z0.numel() == 0:
        raise ValueError(f"z0.shape={tuple(z0.shape)}: must be (batch, ...) and non-empty")
    if not is_finite(z0):
        raise ValueError("z0 contains NaN or inf: start from a finite guess")
    shape = z0.shape
    batch = shape[0]

    def f_flat(z: torch.Tensor) -> torch.Tensor:
        fz = f(z.view(shape))
        if not isinstance(fz, torch.Tensor) or fz.shape != shape:
            got = tuple(fz.shape) if isinstance(fz, torch.Tensor) else type(fz).__name__
            raise ValueError(f"f(z) has shape {got}: must have the shape of z0, {tuple(shape)}")
        return fz.reshape(batch, -1)

    return f_flat, z0.reshape(batch, -1), shape


def check_options(options: SolverOptions) -> SolverOptions:
    """Reject anything that is not a :class:`SolverOptions` (its fields check themselves)."""
    if not isinstance(options, SolverOptions):
        raise TypeError(
            f"options is a {type(options).__name__}: pass analogtorch.deq.options.SolverOptions"
        )
    return options


class SolveMonitor:
    """Bookkeeping of one solve: trace, best iterate, stopping rules, warnings, wall time.

    Samples are independent: each keeps its own best iterate, and a sample whose map value
    or residual stops being finite is dropped (it keeps its best finite iterate, counted in
    ``stats.diverged_samples``) while the others go on; the solve stops as ``"diverged"``
    when no sample is left. The trace and the stopping rules use the largest residual over
    the samples still in the solve.
    """

    def __init__(self, solver: str, options: SolverOptions, z0: torch.Tensor) -> None:
        self.solver = solver
        self.options = options
        self.stats = SolverStats()
        self._z0 = z0
        self.best_z = z0
        self.best_residuals = torch.full((z0.shape[0],), math.inf, dtype=z0.dtype, device=z0.device)
        self.dropped: torch.Tensor | None = None  # (batch,) bool, samples that diverged
        self.floor = (
            NoiseFloorDetector(options.noise_floor_patience, options.noise_floor_ratio)
            if options.detect_noise_floor
            else None
        )
        self._started = time.perf_counter()

    @property
    def best_residual(self) -> float:
        """The largest best residual over the samples still in the solve."""
        live = self.best_residuals
        if self.dropped is not None:
            live = live.masked_fill(self.dropped, 0.0)
        return float(live.max())

    def _drop(self, bad: torch.Tensor, z: torch.Tensor, fz: torch.Tensor) -> bool:
        """Drop the samples ``bad`` (newly non-finite); True when none is left."""
        stats, options = self.stats, self.options
        finite = is_finite(fz[bad]) and is_finite(z[bad])
        what = "the residual overflowed" if finite else "the map returned NaN/inf"
        self.dropped = bad if self.dropped is None else self.dropped | bad
        stats.diverged_samples = int(self.dropped.sum())
        stats.reason = "diverged"
        batch = self.dropped.numel()
        if stats.diverged_samples == batch:
            stats.residuals.append(math.inf)
            warnings.warn(
                f"{self.solver}: {what} at iteration {stats.iterations}; stopping with "
                f"reason 'diverged' and returning the best finite iterate "
                f"(residual {self.best_residual:.3e}, tol {options.tol:.3e}, {options.mode})",
                RuntimeWarning,
                stacklevel=4,
            )
            return True
        warnings.warn(
            f"{self.solver}: {what} for {int(bad.sum())} of {batch} samples at iteration "
            f"{stats.iterations} (reason 'diverged'); they keep their best finite iterate and "
            "the other samples are solved on",
            RuntimeWarning,
            stacklevel=4,
        )
        return False

    def observe(self, z: torch.Tensor, fz: torch.Tensor, g: torch.Tensor | None = None) -> bool:
        """Account for one evaluation ``fz = f(z)`` of flat iterates; True means stop.

        ``g``: the step ``fz − z`` if the solver has it already (saves recomputing it).
        """
        stats, options = self.stats, self.options
        stats.iterations += 1
        # One pass over the data: a NaN or inf in z or f(z) makes its entry of f(z) − z, hence
        # that sample's norm and the maximum, NaN or inf (max propagates NaN). Only then are
        # the samples looked at one by one.
        g = fz - z if g is None else g
        residuals = _residual_of_step(g, fz, options.mode)
        if self.dropped is not None:
            residuals = residuals.masked_fill(self.dropped, 0.0)
        residual = residuals.max().item()
        if not math.isfinite(residual):
            bad = ~torch.isfinite(residuals)
            if self._drop(bad, z, fz):
                return True
            residuals = residuals.masked_fill(bad, 0.0)
            residual = residuals.max().item()
        stats.residuals.append(residual)
        improved = residuals < self.best_residuals
        if self.dropped is not None:
            improved &= ~self.dropped
        self.best_residuals = torch.where(improved, residuals, self.best_residuals)
        self.best_z = torch.where(improved.unsqueeze(-1), z, self.best_z)
        if has_converged(residual, options.tol):
            stats.converged = self.dropped is None
            if stats.converged:
                stats.reason = "converged"
            return True
        if self.floor is not None and self.floor.update(residual):
            stats.reason = "noise floor" if self.dropped is None else "diverged"
            return True
        if stats.iterations >= options.max_iter:
            stats.reason = "max_iter" if self.dropped is None else "diverged"
            warnings.warn(
                f"{self.solver}: not converged after max_iter={options.max_iter} iterations: "
                f"best residual {self.best_residual:.3e} >= tol {options.tol:.3e} "
                f"({options.mode}); returning the best iterate",
                RuntimeWarning,
                stacklevel=3,
            )
            return True
        return False

    def result(self, shape: torch.Size) -> tuple[torch.Tensor, SolverStats]:
        """The best iterate in the caller's shape, and the stats with the wall time set."""
        self.stats.wall_time_s = time.perf_counter() - self._started
        best = self.best_z
        if best is self._z0:  # never hand back (a view of) the caller's starting point
            best = best.clone()
        return best.view(shape), self.stats
