"""``VirtualChip``: a black-box chip with hidden physics richer than a user's surrogate.

The test bed for hardware-in-the-loop training. Its hidden profile, drawn from ``seed``,
has conductance-dependent programming noise, a nonlinear device I–V (sinh), IR drop on the
wires, device gain mismatch, stuck devices, per-device drift exponents and read noise, all
computed by the toolkit's one hardware model (``hardware/``). The parameters are private:
the object exposes only the :class:`Backend` interface and a measurement mode,
``measure(plan)`` (programming sweeps, read-noise series, I–V sweeps, IR-drop patterns: the
data ``analogtorch calibrate`` fits, see :mod:`.chip_measurements`), the way a real chip
and its test port would.
"""

from __future__ import annotations

import torch

from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from .surrogate_backend import SurrogateBackend


def _hidden_profile(seed: int) -> HardwareProfile:
    """Draw the chip design's hidden parameters (uniform within plausible ranges)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "virtual-chip-design"))

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen))

    pcm = HardwareProfile.preset("pcm")
    return pcm.replace(
        name="virtual",
        description="hidden",
        prog_noise_poly=tuple(c * uniform(2.0, 3.0) for c in pcm.prog_noise_poly),
        read_noise_std=uniform(0.01, 0.02),
        transfer_curve="sinh",
        transfer_nonlinearity=uniform(2.0, 3.0),
        wire_resistance_ohm=uniform(2.0, 4.0),
        mismatch_std=uniform(0.1, 0.15),
        stuck_rate=uniform(0.02, 0.04),
        drift_nu_mean=uniform(0.04, 0.06),
        drift_nu_std=uniform(0.01, 0.02),
        drift_compensation=False,
    )


class VirtualChip(SurrogateBackend):
    """A simulated chip whose design parameters the caller does not see (``seed`` picks the
    device instance; ``design_seed`` the hidden design, shared by chips of one design)."""

    name = "virtual-chip"

    def __init__(self, seed: int = 0, design_seed: int = 0, time_s: float = 60.0) -> None:
        super().__init__(_hidden_profile(design_seed), seed=seed, time_s=time_s)

    def __repr__(self) -> str:
        return "VirtualChip(<hidden design>)"
