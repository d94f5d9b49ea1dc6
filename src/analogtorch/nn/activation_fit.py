"""Least-squares fit of a :class:`~.activations.StretchedExponential` to a circuit's response.

Seed 001 (Sec. 2.1) asks for the stretched exponential ``f(x) = −log(1 + a e^{−x})``
"parameterized to match analog circuit responses (e.g., subthreshold MOS behavior)". Given
samples ``(x_i, y_i)`` of a response, :func:`fit_stretched_exponential` finds

    (a, k, c, d) = argmin Σ_i (c f(k x_i) + d − y_i)²,   f(z) = −log(1 + a e^{−z})

with :func:`scipy.optimize.least_squares` (trust-region reflective, ``log a`` as the variable
so ``a > 0``), started from each sign pattern of ``(k, c)`` (a rising rectifier needs
``k, c < 0``, a saturating curve ``k, c > 0``) and keeping the best.
:func:`neuron_activation` fits it to the transistor neuron of
:class:`~analogtorch.hardware.neuron.MOSNeuron` over its input range ``[−r, r]``.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares

from ..hardware.neuron import MOSNeuron
from .activations import StretchedExponential


@dataclass(frozen=True)
class StretchedExponentialFit:
    """Fitted ``y ≈ c f(k x) + d``: ``a`` (dimensionless, > 0), ``input_scale`` ``k`` (1 /
    input units), ``output_scale`` ``c`` and ``output_offset`` ``d`` (output units), and the
    root-mean-square and largest absolute residual over the samples (output units)."""

    a: float
    input_scale: float
    output_scale: float
    output_offset: float
    rms_residual: float
    max_residual: float

    def activation(self, learnable: bool = False) -> StretchedExponential:
        """A :class:`StretchedExponential` with these parameters (``a`` fixed unless
        ``learnable``; the scales and the offset are always fixed)."""
        return StretchedExponential(
            self.a,
            learnable,
            input_scale=self.input_scale,
            output_scale=self.output_scale,
            output_offset=self.output_offset,
        )


def _model(params: np.ndarray, x: np.ndarray) -> np.ndarray:
    log_a, k, c, d = params
    return -c * np.logaddexp(0.0, log_a - k * x) + d


def fit_stretched_exponential(x: torch.Tensor, y: torch.Tensor) -> StretchedExponentialFit:
    """Least-squares ``(a, k, c, d)`` of ``y ≈ c f(k x) + d`` (module docstring) from 1-d
    samples ``x``, ``y`` of equal length (at least 8), fitted in float64."""
    xs = np.asarray(x.detach().cpu(), dtype=np.float64).ravel()
    ys = np.asarray(y.detach().cpu(), dtype=np.float64).ravel()
    if xs.shape != ys.shape or xs.size < 8:
        raise ValueError(
            f"x and y must be 1-d samples of equal length >= 8, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()) or np.ptp(xs) == 0.0:
        raise ValueError("x and y must be finite and x must span an interval")
    # Scale the start to the data: k ~ 4 / (x range), c ~ y range.
    k0, c0 = 4.0 / np.ptp(xs), max(float(np.ptp(ys)), 1e-12)
    fits = [
        least_squares(
            lambda p: _model(p, xs) - ys,
            np.array([0.0, sk * k0, sc * c0, float(np.mean(ys))]),
            method="trf",
            x_scale="jac",
        )
        for sk, sc in itertools.product((1.0, -1.0), repeat=2)
    ]
    best = min(fits, key=lambda fit: fit.cost)
    residual = best.fun
    log_a, k, c, d = (float(v) for v in best.x)
    return StretchedExponentialFit(
        a=math.exp(log_a),
        input_scale=k,
        output_scale=c,
        output_offset=d,
        rms_residual=float(np.sqrt(np.mean(residual**2))),
        max_residual=float(np.abs(residual).max()),
    )


DEFAULT_NEURON = MOSNeuron()


@functools.cache
def fit_neuron(neuron: MOSNeuron = DEFAULT_NEURON) -> StretchedExponentialFit:
    """The fit to ``neuron.response`` on 401 points over ``[−r, r]`` (cached per neuron)."""
    h = neuron.input_samples()
    return fit_stretched_exponential(h, neuron.response(h))


def neuron_activation(
    neuron: MOSNeuron = DEFAULT_NEURON, learnable: bool = False
) -> StretchedExponential:
    """A fresh :class:`StretchedExponential` fitted to ``neuron``'s response (fixed unless
    ``learnable``). Outside ``[−r, r]`` it continues as the fitted softplus, linear in ``x``,
    where the transistor would enter the square law."""
    return fit_neuron(neuron).activation(learnable)


__all__ = [
    "StretchedExponentialFit",
    "fit_neuron",
    "fit_stretched_exponential",
    "neuron_activation",
]
