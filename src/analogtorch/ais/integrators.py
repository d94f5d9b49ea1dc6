"""Fixed-step integrators of ``dx/dt = f(t, x)`` (and ``dx = f dt + σ dW``) for AIS samplers.

Time is discrete: ``f(t, x)`` receives the integer step index ``t`` (or ``segment_fn(t)``,
e.g. the index of a piecewise-constant control segment), not a float time, and is assumed
to have no explicit time dependence inside one step. That holds for drifts whose controls
switch on step boundaries, and RK4 then keeps its fourth order.

Methods, with step ``dt`` (the time unit of ``f``'s rates):

* ``"euler"``:           ``x ← x + dt f(t, x)`` (first order);
* ``"rk4"``:             classical Runge–Kutta (fourth order);
* ``"euler_maruyama"``:  ``x ← x + dt f(t, x) + σ √dt ξ``, ``ξ ~ N(0, I)``, the strong
  order-½ scheme for ``dx = f dt + σ dW``; ``σ`` (``noise_std``) is the diffusion
  coefficient in state units per √(time unit), so a pure diffusion has variance ``σ² T``.

Optional ``project(x)`` runs after every step (e.g. amplitude clipping of saturating
hardware). With ``checkpoint_every = c`` the steps run in chunks of ``c`` under
:func:`torch.utils.checkpoint.checkpoint` (``use_reentrant=False``): only the chunk
boundary states are kept for backward, memory ``O(n_steps / c + c)`` states instead of
``O(n_steps)``. The noise of a chunk comes from a copy of ``generator`` taken at the chunk
start, so the backward recompute draws exactly the same increments and the result equals
the unchunked run's, draw for draw (with ``generator=None`` the global RNG is used and
checkpoint's ``preserve_rng_state`` restores it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch.utils.checkpoint import checkpoint

from ..hardware.random import draw_like

Drift = Callable[[int, torch.Tensor], torch.Tensor]
Method = Literal["euler", "rk4", "euler_maruyama"]
METHODS = ("euler", "rk4", "euler_maruyama")


def euler_step(f: Drift, t: int, x: torch.Tensor, dt: float) -> torch.Tensor:
    """One explicit Euler step ``x + dt f(t, x)``."""
    return x + dt * f(t, x)


def rk4_step(f: Drift, t: int, x: torch.Tensor, dt: float) -> torch.Tensor:
    """One classical RK4 step (``f`` held at step index ``t`` for all four stages)."""
    k1 = f(t, x)
    k2 = f(t, x + (0.5 * dt) * k1)
    k3 = f(t, x + (0.5 * dt) * k2)
    k4 = f(t, x + dt * k3)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _run_steps(
    x: torch.Tensor,
    *,
    f: Drift,
    start: int,
    stop: int,
    dt: float,
    method: Method,
    noise_scale: float,
    generator: torch.Generator | None,
    generator_state: torch.Tensor | None,
    final_state: list[torch.Tensor],
    segment_fn: Callable[[int], int] | None,
    project: Callable[[torch.Tensor], torch.Tensor] | None,
    save_every: int | None,
) -> tuple[torch.Tensor, ...]:
    """Steps ``start … stop − 1``; returns the last state, then the states at save points."""
    if generator is not None and generator_state is not None:
        # A fresh copy, so that a checkpoint recompute replays the same draws.
        generator = torch.Generator(device=generator.device)
        generator.set_state(generator_state)
    step_fn = rk4_step if method == "rk4" else euler_step
    saved = []
    for step in range(start, stop):
        x = step_fn(f, segment_fn(step) if segment_fn is not None else step, x, dt)
        if noise_scale > 0:
            xi = draw_like("normal", x.shape, generator, x)
            x = x + noise_scale * xi
        if project is not None:
            x = project(x)
        if save_every is not None and (step + 1) % save_every == 0:
            saved.append(x)
    if generator is not None and generator_state is not None:
        final_state[:] = [generator.get_state()]
    return (x, *saved)


def integrate(
    f: Drift,
    x0: torch.Tensor,
    *,
    dt: float,
    n_steps: int,
    method: Method = "rk4",
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    checkpoint_every: int | None = None,
    segment_fn: Callable[[int], int] | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    save_every: int | None = None,
) -> torch.Tensor:
    """Integrate ``n_steps`` fixed steps of size ``dt`` from ``x0`` (module docstring).

    Returns the final state ``x(n_steps · dt)`` (shape of ``x0``), or with ``save_every = k``
    the trajectory ``[x(0), x(k dt), x(2k dt), …, x(n_steps dt)]`` stacked along a new first
    dimension (the final state always last).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(map(repr, METHODS))}")
    if not dt > 0 or math.isinf(dt):
        raise ValueError(f"dt={dt}: step must be finite and > 0")
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps={n_steps!r}: must be an integer >= 0")
    if not noise_std >= 0 or math.isinf(noise_std):
        raise ValueError(f"noise_std={noise_std}: diffusion coefficient must be finite, >= 0")
    if noise_std > 0 and method != "euler_maruyama":
        raise ValueError(
            f"noise_std={noise_std} with method={method!r}: a noisy system needs "
            "method='euler_maruyama'"
        )
    for name, value in (("checkpoint_every", checkpoint_every), ("save_every", save_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r}: must be an integer >= 1 or None")

    run = partial(
        _run_steps,
        f=f,
        dt=dt,
        method=method,
        noise_scale=noise_std * math.sqrt(dt),
        generator=generator,
        segment_fn=segment_fn,
        project=project,
        save_every=save_every,
    )
    chunk = checkpoint_every if checkpoint_every is not None and torch.is_grad_enabled() else None
    trajectory = [x0]
    x = x0
    if chunk is None:
        x, *saved = run(x, start=0, stop=n_steps, generator_state=None, final_state=[])
        trajectory += saved
    else:
        # Only an explicit generator needs copying; the global RNG is restored by checkpoint.
        copied = generator if noise_std > 0 else None
        for start in range(0, n_steps, chunk):
            final_state: list[torch.Tensor] = []
            chunk_fn = partial(
                run,
                start=start,
                stop=min(start + chunk, n_steps),
                generator_state=None if copied is None else copied.get_state(),
                final_state=final_state,
            )
            x, *saved = checkpoint(chunk_fn, x, use_reentrant=False)
            if copied is not None:
                copied.set_state(final_state[0])
            trajectory += saved
    if save_every is None:
        return x
    if n_steps % save_every != 0:
        trajectory.append(x)
    return torch.stack(trajectory)
