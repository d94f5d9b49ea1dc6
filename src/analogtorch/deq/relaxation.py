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

Settling: every ``τ`` the change of the state over the last ``τ`` window, per sample
``‖z(t) − z(t − τ)‖ / ‖z(t)‖`` (or absolute), largest over the batch, is compared with
``tol``; the first time below is the settling time. With noise the change stops falling
at a floor; the noise-floor rule of the solvers (``SolverOptions.noise_floor_*``) then
stops the integration with ``reason = "noise floor"``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..hardware.profile import HardwareProfile
from .cores import AnalogCore
from .options import SolverOptions, StopReason
from .residual import NoiseFloorDetector, residual_norm


def relaxation_time_constant(profile: HardwareProfile) -> float:
    """``τ = C / g_max`` in seconds."""
    return profile.node_capacitance_farads / profile.g_max_siemens


@dataclass
class RelaxationStats:
    """What an analog relaxation did (times in seconds)."""

    steps: int = 0
    tau_s: float = 0.0
    dt_s: float = 0.0
    settling_time_s: float = math.inf
    settled: bool = False
    reason: StopReason = "max_iter"
    changes: list[float] = field(default_factory=list)  # per τ window
    wall_time_s: float = 0.0

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
    """Integrate ``τ dz/dt = −z + f(z, u)`` from ``z0`` (zeros) until it settles.

    Args:
        core: the trained analog core (its profile sets τ, t_read and the noise).
        u: injection (batch, width), held constant (a DAC output).
        options: ``tol``, ``mode`` and the noise-floor rule (``max_iter`` is not used).
        steps_per_tau: Euler–Maruyama steps per time constant (``dt = τ / steps_per_tau``).
        max_tau: give up after ``max_tau · τ`` seconds (warns, ``reason = "max_iter"``).
        noise: draw read noise (False: the noise-free circuit).
    Returns the state at the end and :class:`RelaxationStats`.
    """
    options = SolverOptions() if options is None else options
    if steps_per_tau < 2:
        raise ValueError(f"steps_per_tau={steps_per_tau}: need >= 2 for a stable Euler step")
    if not max_tau > 0:
        raise ValueError(f"max_tau={max_tau}: must be > 0")
    profile = core.feedback.chip_read.profile if core.feedback.chip_read else core.feedback.profile
    tau = relaxation_time_constant(profile)
    dt = tau / steps_per_tau
    stats = RelaxationStats(tau_s=tau, dt_s=dt)
    chip = core.feedback.chip_read
    noisy = noise and (profile.has_noise or (chip is not None and chip.read_noise_std > 0))
    floor = (
        NoiseFloorDetector(options.noise_floor_patience, options.noise_floor_ratio)
        if options.detect_noise_floor and noisy
        else None
    )
    z = torch.zeros(core.state_shape(u), dtype=u.dtype, device=u.device) if z0 is None else z0
    started = time.perf_counter()
    alpha = 1.0 / steps_per_tau
    with continuous_time(core, math.sqrt(profile.t_read_seconds / dt), noise):
        window_start = z
        max_windows = max(1, math.ceil(max_tau))
        for _ in range(max_windows):
            for _ in range(steps_per_tau):
                z = torch.lerp(z, core(z, u), alpha)
            stats.steps += steps_per_tau
            if not bool(torch.isfinite(z).all()):
                stats.reason = "diverged"
                warnings.warn(
                    f"analog relaxation diverged after {stats.duration_s:.3e} s",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            change = residual_norm(z, window_start, options.mode).max().item()
            stats.changes.append(change)
            window_start = z
            if change < options.tol:
                stats.settled, stats.reason = True, "converged"
                stats.settling_time_s = stats.duration_s
                break
            if floor is not None and floor.update(change):
                stats.reason = "noise floor"
                stats.settling_time_s = stats.duration_s
                break
        else:
            warnings.warn(
                f"analog relaxation did not settle within {max_tau}·τ = {max_tau * tau:.3e} s: "
                f"change over the last τ {stats.changes[-1]:.3e} >= tol {options.tol:.1e}",
                RuntimeWarning,
                stacklevel=2,
            )
    stats.wall_time_s = time.perf_counter() - started
    return z, stats
