"""Converters at the analog–digital interface of a hybrid DEQ.

The injection ``u = g_θ(x)`` enters the analog core through a DAC and the equilibrium
``z*`` leaves it through an ADC. Each is a ``b``-bit signed uniform quantiser over a
learned full scale ``r`` (initialised from the first batch, ``r = max |v|``)::

    Q(v) = (r / 2^(b-1)) · clamp(round(v · 2^(b-1) / r), −2^(b-1), 2^(b-1) − 1)

with straight-through gradients for ``v`` and the LSQ step gradient for ``r``
(:func:`analogtorch.hardware.quantize.integer_codes`). ``bits=None`` is an ideal converter.
"""

from __future__ import annotations

import torch
from torch import nn

from ..hardware.quantize import integer_codes


class Converter(nn.Module):
    """A ``bits``-bit DAC or ADC with learned full scale (state units); identity if None.

    The energy model costs it as one periphery operation per element (``energy_kind``);
    the conversions of the core's own crossbar are costed with the crossbar.
    """

    energy_kind = "elementwise"

    def __init__(self, bits: int | None, *, kind: str = "ADC") -> None:
        super().__init__()
        if bits is not None and not 1 <= bits <= 16:
            raise ValueError(f"{kind} bits={bits}: use an integer in [1, 16] or None")
        self.bits = bits
        self.kind = kind
        self.full_scale = nn.Parameter(torch.ones(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return v
        if not bool(self.initialized):
            with torch.no_grad():
                self.full_scale.fill_(v.detach().abs().max().clamp_min(1e-6))
                self.initialized.fill_(True)
        half = float(1 << (self.bits - 1))
        scale = self.full_scale.abs().clamp_min(1e-8)
        return integer_codes(v, half / scale, self.bits) * (scale / half)

    def extra_repr(self) -> str:
        return f"{self.kind}, bits={self.bits}"
