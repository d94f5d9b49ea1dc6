"""Analog relaxation: the equilibrium core run as a continuous-time circuit.

Each state node is a capacitor ``C`` (``profile.node_capacitance_farads``) with a leak
conductance ``g_max`` (``profile.g_max_siemens``), driven by the crossbar current and the
injection, so that in state units

    τ dz/dt = −z + f(z, u),        τ = C / g_max   (seconds; 40 ns for 1 pF and 25 µS).

Integration is Euler–Maruyama with step ``dt = τ / steps_per_tau``. There is no ADC or DAC
inside the loop (the state is an analog voltage fed straight back); the core's crossbar
runs through the same surrogate ``S`` of ``hardware/`` with converters removed. Read noise
is treated as white over the read window ``t_read``: the surrogate's per-read noise of std
``σ`` (averaged over ``t_read``) becomes, averaged over ``dt``, ``σ √(t_read / dt)``, so the
increment ``dz`` carries noise of std ``σ √(t_read · dt) / τ`` — the Euler–Maruyama
discretisation of ``τ dz = (−z + f) dt + σ √t_read dW``. On a programmed :class:`Chip` the
chip's frozen devices and read noise are used; otherwise the profile's read and output
noise (no programming noise: the devices are fixed during one relaxation).

Settling, per sample (each sample is one inference with its own convergence detector,
``‖z(t) − z(t − τ)‖ < ε`` of the seed's circuit): every ``τ`` the change of the state over
the last ``τ`` window, ``‖z(t) − z(t − τ)‖ / ‖z(t)‖`` (or absolute), is compared with ``tol``;
a sample below it is read out there (its settling time) and stops integrating, the others
go on. With noise the change stops falling at a floor; the noise-floor rule of the solvers
(``SolverOptions.noise_floor_*``, on the largest change over the samples still integrating)
then stops them all with ``reason = "noise floor"``. A sample whose state turns NaN/inf is
dropped with a warning and keeps its last finite state (``reason = "diverged"``), as in the
solvers: a relaxation never returns NaN.

Energy per sample is the energy model's ``E(T)`` of continuous-time dynamics
(:func:`analogtorch.energy.estimate_dynamics`: crossbar and unit power × ``T`` plus the
ADC read-out of the state) at that sample's time until read-out ``T``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..energy.dynamics import estimate_dynamics
from ..hardware.profile import HardwareProfile
from .cores import AnalogCore
from .options import SolverOptions, SolverStats, StopReason
from .residual import NoiseFloorDetector, finite_rows, residual_norm


def relaxation_time_constant(profile: HardwareProfile) -> float:
    """``τ = C / g_max`` in seconds."""
    return profile.node_capacitance_farads / profile.g_max_siemens


@dataclass(frozen=True)
class RelaxationOptions:
    """How the circuit ODE is integrated: ``steps_per_tau`` Euler–Maruyama steps per time
    constant (``dt = τ / steps_per_tau``; >= 2 for a stable step) and a budget of
    ``max_tau · τ`` seconds, after which the samples still relaxing are read out with a
    warning (``reason = "max_iter"``)."""

    steps_per_tau: int = 10
    max_tau: float = 200.0

    def __post_init__(self) -> None:
        if isinstance(self.steps_per_tau, bool) or not isinstance(self.steps_per_tau, int):
            raise TypeError(f"steps_per_tau={self.steps_per_tau!r}: must be an int")
        if self.steps_per_tau < 2:
            raise ValueError(
                f"steps_per_tau={self.steps_per_tau}: need >= 2 for a stable Euler step"
            )
        if not (math.isfinite(self.max_tau) and self.max_tau > 0):
            raise ValueError(f"max_tau={self.max_tau}: must be a finite number of τ > 0")


@dataclass
class RelaxationStats(SolverStats):
    """What an analog relaxation did, in the terms of a solver's :class:`SolverStats`
    (times in seconds, energies in joules).

    ``iterations``: Euler steps integrated (also ``steps``); ``residuals``: per ``τ`` window,
    the largest change over the samples still relaxing (also ``changes``); ``converged``:
    every sample settled below ``tol`` (also ``settled``); ``reason`` and
    ``diverged_samples`` as for a solver. ``settling_time_s``: when the last sample settled
    or the noise floor stopped the batch (inf when the budget ran out or a sample diverged).

    Per sample, shape (batch,): ``sample_duration_s`` is the circuit time until its
    read-out (its own settling, the noise-floor stop, the end of the budget, or the last
    finite window of a diverged sample); ``sample_settled`` whether its change fell below
    ``tol``; ``sample_settling_time_s`` its read-out time where it settled or reached the
    noise floor, inf where the budget ran out or it diverged; ``sample_energy_j`` the energy
    model's ``E(sample_duration_s)``.
    """

    tau_s: float = 0.0
    dt_s: float = 0.0
    settling_time_s: float = math.inf
    sample_duration_s: torch.Tensor | None = None
    sample_settled: torch.Tensor | None = None
    sample_settling_time_s: torch.Tensor | None = None
    sample_energy_j: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return self.iterations

    @property
    def settled(self) -> bool:
        return self.converged

    @property
    def changes(self) -> list[float]:
        return self.residuals

    @property
    def duration_s(self) -> float:
        """Simulated circuit time until the integration stopped."""
        return self.steps * self.dt_s


@contextmanager
def continuous_time(core: AnalogCore, noise_gain: float, noise: bool) -> Iterator[None]:
    """Run ``core.feedback`` without converters and with read noise scaled by
    ``noise_gain`` (``√(t_read/dt)``) for the duration of the block."""
    layer = core.feedback
    saved = (layer.profile, layer.chip_read, layer.eval_noise, layer.training)
    try:
        if layer.chip_read is not None:
            chip = layer.chip_read
            chip_profile = chip.profile.replace(dac_bits=None, adc_bits=None).scale_noise(
                noise_gain if noise else 0.0
            )
            layer.chip_read = dataclasses.replace(
                chip,
                profile=chip_profile,
                read_noise_std=chip.read_noise_std * (noise_gain if noise else 0.0),
            )
        else:
            layer.profile = (
                layer.profile.replace(
                    dac_bits=None, adc_bits=None, prog_noise_std=0.0, prog_noise_poly=()
                )
                .replace(mismatch_std=0.0, stuck_rate=0.0)
                .scale_noise(noise_gain if noise else 0.0)
            )
            layer.eval_noise = noise
            layer.training = False
        yield
    finally:
        layer.profile, layer.chip_read, layer.eval_noise, layer.training = saved


def energy_per_sample(
    core: AnalogCore, profile: HardwareProfile, durations_s: torch.Tensor
) -> torch.Tensor:
    """``E(T)`` in joules of the core's crossbar and units relaxing for each ``T`` of
    ``durations_s`` (seconds, > 0) and the ADC read-out of the state
    (:func:`~analogtorch.energy.estimate_dynamics` on the feedback weights and ``profile``)."""
    weights = core.feedback.weight.detach()
    # Read-outs happen at window ends, so a batch has few distinct durations.
    durations, index = torch.unique(durations_s, return_inverse=True)
    energies = [
        estimate_dynamics(weights, profile, t, baselines=()).energy_j for t in durations.tolist()
    ]
    return torch.tensor(energies, dtype=torch.float64, device=durations_s.device)[index]


def _warn_diverged(stats: RelaxationStats, n_bad: int, batch: int, left: int) -> None:
    warnings.warn(
        f"analog relaxation diverged for {n_bad} of {batch} samples after "
        f"{stats.duration_s:.3e} s (reason 'diverged'): they keep their last finite state"
        + (f"; the other {left} relax on" if left else ""),
        RuntimeWarning,
        stacklevel=3,
    )


@torch.no_grad()
def relax(
    core: AnalogCore,
    u: torch.Tensor,
    *,
    z0: torch.Tensor | None = None,
    options: SolverOptions | None = None,
    steps_per_tau: int = 10,
    max_tau: float = 200.0,
    noise: bool = True,
) -> tuple[torch.Tensor, RelaxationStats]:
    """Integrate ``τ dz/dt = −z + f(z, u)`` from ``z0`` (zeros) until every sample settles.

    Args:
        core: the trained analog core (its profile sets τ, t_read and the noise).
        u: injection (batch, width), held constant (a DAC output).
        options: ``tol``, ``mode`` and the noise-floor rule (``max_iter`` is not used).
        steps_per_tau, max_tau: see :class:`RelaxationOptions`.
        noise: draw read noise (False: the noise-free circuit).
    Returns each sample's state at its read-out (always finite) and
    :class:`RelaxationStats`.
    """
    options = SolverOptions() if options is None else options
    settings = RelaxationOptions(steps_per_tau, max_tau)
    chip = core.feedback.chip_read
    profile = chip.profile if chip is not None else core.feedback.profile
    tau = relaxation_time_constant(profile)
    dt = tau / settings.steps_per_tau
    stats = RelaxationStats(tau_s=tau, dt_s=dt)
    noisy = noise and (profile.has_noise or (chip is not None and chip.read_noise_std > 0))
    floor = (
        NoiseFloorDetector(options.noise_floor_patience, options.noise_floor_ratio)
        if options.detect_noise_floor and noisy
        else None
    )
    z = torch.zeros(core.state_shape(u), dtype=u.dtype, device=u.device) if z0 is None else z0
    z = z.clone()  # written sample by sample below; never the caller's tensor
    batch = z.shape[0]
    read_out = torch.zeros(batch, dtype=torch.float64, device=z.device)
    settling = torch.full_like(read_out, math.inf)
    below_tol = torch.zeros(batch, dtype=torch.bool, device=z.device)
    live = torch.arange(batch, device=z.device)  # samples still relaxing
    ended: StopReason = "max_iter"
    started = time.perf_counter()
    alpha = 1.0 / settings.steps_per_tau
    with continuous_time(core, math.sqrt(profile.t_read_seconds / dt), noise):
        for _ in range(math.ceil(settings.max_tau)):
            start, u_live = z[live], u[live]
            z_live = start
            for _ in range(settings.steps_per_tau):
                z_live = torch.lerp(z_live, core(z_live, u_live), alpha)
            stats.iterations += settings.steps_per_tau
            now = stats.duration_s
            change = residual_norm(z_live.flatten(1), start.flatten(1), options.mode)
            # A state or a change that is not finite (an overflowing norm) is a divergence.
            finite = finite_rows(z_live.flatten(1)) & torch.isfinite(change)
            if not bool(finite.all()):
                bad = live[~finite]
                z_live = torch.where(finite.view(-1, *[1] * (z.dim() - 1)), z_live, start)
                change = change.masked_fill(~finite, math.inf)
                read_out[bad] = now
                stats.diverged_samples += len(bad)
                _warn_diverged(stats, len(bad), batch, int(finite.sum()))
            z[live] = z_live
            stats.residuals.append(change[finite].max().item() if bool(finite.any()) else math.inf)
            done = live[change < options.tol]
            read_out[done], settling[done], below_tol[done] = now, now, True
            live = live[finite & (change >= options.tol)]
            if len(live) == 0:
                ended = "converged"
                break
            if floor is not None and floor.update(stats.residuals[-1]):
                ended = "noise floor"
                read_out[live], settling[live] = now, now
                break
        else:
            read_out[live] = now
            warnings.warn(
                f"analog relaxation: {len(live)} of {batch} samples did not settle within "
                f"{settings.max_tau}·τ = {settings.max_tau * tau:.3e} s: largest change over "
                f"the last τ {stats.residuals[-1]:.3e} >= tol {options.tol:.1e}; they are read "
                "out at the end of the budget",
                RuntimeWarning,
                stacklevel=2,
            )
    diverged = stats.diverged_samples > 0
    stats.reason = "diverged" if diverged else ended
    stats.converged = ended == "converged" and not diverged
    if ended != "max_iter" and not diverged:
        stats.settling_time_s = stats.duration_s
    stats.sample_duration_s = read_out
    stats.sample_settled = below_tol
    stats.sample_settling_time_s = settling
    stats.sample_energy_j = energy_per_sample(core, profile, read_out)
    stats.wall_time_s = time.perf_counter() - started
    return z, stats
