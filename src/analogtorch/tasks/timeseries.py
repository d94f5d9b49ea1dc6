"""Multi-step forecasting of the chaotic Mackey–Glass series.

The delay differential equation (dimensionless time) is

    dx/dt = a x(t − τ) / (1 + x(t − τ)^n) − c x(t),      a = 0.2, c = 0.1, n = 10,

chaotic for τ = 17. It is integrated with RK4 (:func:`~analogtorch.tasks.lorenz.rk4_integrate`
in its non-autonomous form) at step ``dt``, reading the delayed state from a buffer of the
past trajectory, linearly interpolated at the half steps. The initial history on [−τ, 0] is
seeded noise in [0.5, 1.5]; a burn-in removes its trace. The series is then sampled every
``sample_interval`` time units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from analogtorch.tasks.base import (
    TaskData,
    check_dtype,
    check_float,
    check_int,
    register_task,
)
from analogtorch.tasks.lorenz import rk4_integrate, steps_for

MG_A = 0.2
MG_C = 0.1
MG_POWER = 10


def mackey_glass_series(
    n_samples: int,
    seed: int = 0,
    *,
    tau: float = 17.0,
    dt: float = 0.1,
    sample_interval: float = 1.0,
    burn_in: float = 500.0,
    initial: float | None = None,
) -> Tensor:
    """``n_samples`` values of the Mackey–Glass series (float64), spaced ``sample_interval``.

    ``tau`` and ``sample_interval`` must be integer multiples of ``dt``; ``burn_in`` time units
    are integrated and discarded first (rounded to a whole number of samples). ``initial``: a
    constant history ``x(t) = initial`` on [−τ, 0] instead of the seeded noise.
    """
    n_samples = check_int("n_samples", n_samples)
    check_int("seed", seed, minimum=0)
    dt = check_float("dt", dt)
    delay = steps_for("tau", check_float("tau", tau), dt)
    stride = steps_for("sample_interval", check_float("sample_interval", sample_interval), dt)
    burn_samples = math.ceil(check_float("burn_in", burn_in, strict=False) / sample_interval)
    if initial is None:
        history = (0.5 + np.random.default_rng(seed).random(delay + 1)).tolist()
    else:
        history = [check_float("initial", initial)] * (delay + 1)
    # history[j] is x at time (j − delay)·dt, so the delayed state x(t − τ) sits at j = t/dt.

    def delayed(t: float) -> float:
        position = t / dt
        j = math.floor(position + 1e-9)
        frac = position - j
        if frac < 1e-9:
            return history[j]
        return history[j] + frac * (history[j + 1] - history[j])

    def rhs(t: float, x: float) -> float:
        lagged = delayed(t)
        return MG_A * lagged / (1.0 + lagged**MG_POWER) - MG_C * x

    total_steps = (burn_samples + n_samples - 1) * stride
    for step in range(total_steps):
        history.append(rk4_integrate(rhs, history[-1], dt, 1, t0=step * dt))
    start = delay + burn_samples * stride
    return torch.tensor(history[start::stride], dtype=torch.float64)


def windows(series: Tensor, window: int, horizon: int) -> tuple[Tensor, Tensor]:
    """All stride-1 windows: ``x_i = s[i : i+window]``, ``y_i = s[i+window : i+window+horizon]``."""
    frames = series.unfold(0, window + horizon, 1)
    return frames[:, :window], frames[:, window:]


@register_task("mackey-glass")
def mackey_glass_forecast(
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    window: int = 32,
    horizon: int = 8,
    tau: float = 17.0,
    *,
    dt: float = 0.1,
    sample_interval: float = 1.0,
    gap: int | None = None,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression: ``window`` past samples → the next ``horizon`` samples.

    Train windows (stride 1) cover the first ``n_train + window + horizon − 1`` samples of one
    series, test windows a later part after ``gap`` unused samples (default ``window + horizon``),
    so no sample is shared. With ``normalize`` the series is mapped by ``(s − mean)/std`` of its
    training part (``info`` "mean", "std"; identity when off).
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    window, horizon = check_int("window", window), check_int("horizon", horizon)
    gap = window + horizon if gap is None else check_int("gap", gap, minimum=0)
    dtype = check_dtype(dtype)
    span = window + horizon - 1
    train_len, test_len = n_train + span, n_test + span
    series = mackey_glass_series(
        train_len + gap + test_len, seed, tau=tau, dt=dt, sample_interval=sample_interval
    )
    train_part, test_part = series[:train_len], series[train_len + gap :]
    mean, std = (float(train_part.mean()), float(train_part.std())) if normalize else (0.0, 1.0)
    x_train, y_train = windows((train_part - mean) / std, window, horizon)
    x_test, y_test = windows((test_part - mean) / std, window, horizon)
    info: dict[str, object] = {
        "tau": tau,
        "dt": dt,
        "sample_interval": sample_interval,
        "window": window,
        "horizon": horizon,
        "gap": gap,
        "test_offset": train_len + gap,
        "mean": mean,
        "std": std,
        "equation": "dx/dt = 0.2 x(t-tau)/(1+x(t-tau)^10) - 0.1 x(t)",
    }
    return TaskData(
        name="mackey-glass",
        kind="regression",
        x_train=x_train.to(dtype).contiguous(),
        y_train=y_train.to(dtype).contiguous(),
        x_test=x_test.to(dtype).contiguous(),
        y_test=y_test.to(dtype).contiguous(),
        info=info,
    )
