"""The ``Backend`` protocol: a device that stores weight matrices and computes with them.

Hardware-in-the-loop training talks to real (or simulated) hardware only through this
interface. A backend holds named layers; for each it was given a weight matrix ``W``
(out, in) in the layer's units and a DAC full scale ``input_range`` ``r`` (the largest
|input| the converters accept). ``mvm(name, x)`` returns the hardware's estimate of
``y = x Wᵀ`` (batch, out) in the same units, with whatever non-idealities the hardware has.

Units: the caller works in layer units; a backend maps them to volts and siemens itself
(inputs ``V = v_read · x / r``, conductances ``G = g_max · W / s`` per output row) and maps
the measured currents back.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


class BackendInputError(ValueError):
    """An input is outside what the backend's converters accept (names layer and value)."""


@runtime_checkable
class Backend(Protocol):
    """What every hardware backend provides (see the module docstring for units)."""

    name: str

    def program(self, layer: str, weight: torch.Tensor, input_range: float) -> torch.Tensor | None:
        """Store ``weight`` (out, in) under ``layer``; restart its time since programming.

        Returns the weights as actually programmed (read back, in layer units) when the
        hardware can read them, else ``None``.
        """
        ...

    def mvm(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """``y ≈ x Wᵀ`` for ``x`` (batch, in) with ``|x| <= input_range``; (batch, out).

        Raises :class:`BackendInputError` for inputs beyond ``input_range`` and ``KeyError``
        for a layer that was never programmed.
        """
        ...

    def time_since_programming(self, layer: str) -> float:
        """Seconds since ``layer`` was programmed (the clock the backend's drift follows)."""
        ...

    @property
    def calls(self) -> int:
        """Input vectors processed so far by ``mvm`` (the HIL budget counts these)."""
        ...


def check_inputs(layer: str, x: torch.Tensor, input_range: float, in_features: int) -> None:
    """Raise :class:`BackendInputError` unless ``x`` is (batch, in_features) within ±range."""
    if x.ndim != 2 or x.shape[1] != in_features:
        raise BackendInputError(
            f"layer {layer!r}: inputs must have shape (batch, {in_features}), got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise BackendInputError(f"layer {layer!r}: inputs contain NaN or inf")
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > input_range * (1 + 1e-6):
        raise BackendInputError(
            f"layer {layer!r}: input magnitude {peak:.4g} exceeds the DAC full scale "
            f"input_range={input_range:.4g}; scale or clip the inputs"
        )
