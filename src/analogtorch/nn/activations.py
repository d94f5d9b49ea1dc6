"""Activation functions: a learnable asymmetric softplus-type curve and the device's own I-V curve.

* :class:`StretchedExponential` -- ``f(x) = -log(1 + a e^(-x))`` with a learnable ``a > 0``
  (dimensionless): a smooth, one-sided saturating curve (``-> 0`` for large ``x``, linear
  ``x - log a`` for very negative ``x``), evaluated as ``-softplus(log a - x)`` so it never
  overflows; optionally between fixed input/output scales, ``y = c f(k x) + d``, as fitted to
  a circuit's response by :mod:`.activation_fit`.
* :class:`DeviceActivation` -- the hardware's own nonlinearity: the normalised device transfer
  curve of a :class:`~analogtorch.hardware.profile.HardwareProfile` (``sinh``, ``tanh`` or
  ``linear``, formula in :func:`analogtorch.hardware.circuit.transfer_curve`) scaled to an input
  range ``r`` (state units) and saturating at ``+-r``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..hardware.circuit import transfer_curve
from ..hardware.profile import HardwareProfile

__all__ = ["DeviceActivation", "StretchedExponential"]


class StretchedExponential(nn.Module):
    """Asymmetric activation ``f(x) = -log(1 + a e^(-x))`` with ``a > 0`` (dimensionless).

    Computed as ``f(x) = -softplus(log a - x) = -log(e^0 + e^(log a - x))`` (a log-sum-exp),
    which is finite for any finite ``x`` (no ``e^(-x)`` overflow for ``x -> -inf``, no
    ``log(1 + tiny)`` loss for ``x -> +inf``).

    Asymptotes: ``f(x) -> 0^-`` for ``x -> +inf`` (``f(x) ~ -a e^(-x)``) and
    ``f(x) ~ x - log a`` for ``x -> -inf``; ``f(log a) = -log 2``, ``f(0) = -log(1 + a)``.

    Derivatives: ``df/dx = a e^(-x) / (1 + a e^(-x)) = sigmoid(log a - x)``, in ``(0, 1)``, so
    ``f`` is strictly increasing; ``df/da = -e^(-x) / (1 + a e^(-x)) = -sigmoid(log a - x) / a``.

    ``a`` is stored as ``log_a`` (``a = exp(log_a)`` stays positive under any gradient step); it
    is an ``nn.Parameter`` when ``learnable`` and a buffer (fixed) otherwise. Input and output
    have the same shape and units.

    ``input_scale`` ``k``, ``output_scale`` ``c`` and ``output_offset`` ``d`` (fixed floats,
    default 1, 1, 0: plain ``f``) map it onto a circuit's response, ``y = c f(k x) + d``; with
    ``k, c < 0`` that is a shifted softplus, ``y = |c| softplus(log a + |k| x) + d``, a smooth
    rectifier. (An input offset would duplicate ``log a``.)
    """

    def __init__(
        self,
        a: float = 1.0,
        learnable: bool = True,
        *,
        input_scale: float = 1.0,
        output_scale: float = 1.0,
        output_offset: float = 0.0,
    ) -> None:
        super().__init__()
        a = float(a)
        if not math.isfinite(a) or a <= 0.0:
            raise ValueError(
                f"StretchedExponential: a={a!r} must be a finite positive number "
                "(f(x) = -log(1 + a e^(-x)) needs a > 0); pass e.g. a=1.0"
            )
        scales = {"input_scale": input_scale, "output_scale": output_scale}
        for name, value in {**scales, "output_offset": output_offset}.items():
            if not math.isfinite(value) or (name in scales and value == 0.0):
                raise ValueError(
                    f"StretchedExponential: {name}={value!r} must be finite"
                    + (" and non-zero" if name in scales else "")
                )
        self.input_scale = float(input_scale)
        self.output_scale = float(output_scale)
        self.output_offset = float(output_offset)
        self.learnable = bool(learnable)
        log_a = torch.tensor(math.log(a), dtype=torch.get_default_dtype())
        if self.learnable:
            self.log_a = nn.Parameter(log_a)
        else:
            self.register_buffer("log_a", log_a)

    @property
    def a(self) -> torch.Tensor:
        """The positive coefficient ``a = exp(log_a)`` (0-d tensor, differentiable if learnable)."""
        return self.log_a.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``c * -softplus(log a - k x) + d``, elementwise; same shape as ``x``.

        ``softplus(z) = log(e^0 + e^z)`` via :func:`torch.logaddexp`, exact to rounding for all
        ``z`` (``F.softplus`` switches to ``z`` above a threshold of 20, an error up to ``e^-20``).
        """
        if self.input_scale != 1.0:
            x = self.input_scale * x
        z = self.log_a.to(x.dtype) - x
        y = -torch.logaddexp(z.new_zeros(()), z)
        if self.output_scale != 1.0 or self.output_offset != 0.0:
            y = self.output_scale * y + self.output_offset
        return y

    def extra_repr(self) -> str:
        scales = (
            ""
            if (self.input_scale, self.output_scale, self.output_offset) == (1.0, 1.0, 0.0)
            else f", input_scale={self.input_scale:.4g}, output_scale={self.output_scale:.4g}, "
            f"output_offset={self.output_offset:.4g}"
        )
        return f"a={self.a.item():.4g}, learnable={self.learnable}{scales}"


class DeviceActivation(nn.Module):
    """The hardware's own nonlinearity, taken from the profile's device transfer curve.

    ``y = r * f(clamp(x / r, -1, 1))`` with ``r = input_range`` (state units, ``r > 0``) and
    ``f`` the normalised device I-V curve of ``profile`` (see
    :func:`analogtorch.hardware.circuit.transfer_curve`, nonlinearity ``a =
    profile.transfer_nonlinearity``):

    * ``sinh``: ``y = r sinh(a x / r) / sinh(a)`` (expansive, selector / ReRAM I-V);
    * ``tanh``: ``y = r tanh(a x / r) / tanh(a)`` (compressive, saturating driver);
    * ``linear``: ``y = clamp(x, -r, r)`` (identity inside the range).

    ``f(+-1) = +-1``, so ``y(+-r) = +-r`` and outside ``[-r, r]`` the output saturates at
    ``+-r`` (the input voltage range of the array), with zero gradient there. Units of ``y`` are
    those of ``x``.
    """

    def __init__(self, profile: HardwareProfile, *, input_range: float = 1.0) -> None:
        super().__init__()
        if not isinstance(profile, HardwareProfile):
            raise TypeError(
                f"DeviceActivation: profile={profile!r} is not a HardwareProfile; pass e.g. "
                "HardwareProfile.preset('ideal')"
            )
        r = float(input_range)
        if not math.isfinite(r) or r <= 0.0:
            raise ValueError(
                f"DeviceActivation: input_range={input_range!r} must be a finite positive number "
                "(state units mapped to full-scale input); pass e.g. input_range=1.0"
            )
        self.input_range = r
        self.curve = profile.transfer_curve
        self.nonlinearity = float(profile.transfer_nonlinearity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``r * f(clamp(x / r, -1, 1))``, elementwise; same shape as ``x``."""
        r = self.input_range
        x_hat = torch.clamp(x / r, -1.0, 1.0)
        return r * transfer_curve(x_hat, self.curve, self.nonlinearity)

    def extra_repr(self) -> str:
        return (
            f"curve={self.curve!r}, nonlinearity={self.nonlinearity:g}, "
            f"input_range={self.input_range:g}"
        )
