"""`AnalogInteractionSystem`: what every AIS sampler shares (units, couplings, integration).

An AIS generator maps a latent initial state ``s(0) = z`` of ``n_units = n_visible +
n_hidden`` physical units (visible first, one per pixel of the ``(C, H, W)`` image) to an
image read out from the visible units' state ``s(T)`` after running its dynamics

    ds/dt = F_k(s; J)   on segment k of K,   T = K · steps_per_segment · dt,

with a :class:`~analogtorch.ais.couplings.Couplings` matrix ``J`` times an optional
piecewise-constant coupling gain ``g_k ∈ (0, 1)`` (a global coupling-strength control).
Subclasses define the drift ``F_k``, the latent distribution and the readout.

Units: time is normalised by ``time_unit_s`` (seconds); ``dt`` and the horizon are in
time units and every rate (``J``, frequencies, injections) is per time unit, i.e. divide
by ``time_unit_s`` for rad/s or 1/s. ``duration_s = n_steps · dt · time_unit_s`` is the
physical sampling time of one image.

Noise (``profile``): programming noise of the couplings is drawn once per forward call
(one chip programming per generated batch); thermal noise is a Wiener term of diffusion
``σ = profile.read_noise_std · j_max`` per √(time unit) on every unit — an assumption:
the read-noise fraction of the full-scale coupling rate, white over one time unit —
integrated by Euler–Maruyama. A noisy system draws from the ``generator`` handed to
``forward``/``evolve`` or, when none is given, from its own stream (seeded from ``seed``,
re-seeded by :meth:`reseed`; the WGAN trainer re-seeds it every step, so runs are
reproducible and resumable).

Coupling product (``coupling_product``): every drift evaluation computes ``J s`` with a
product built from the effective ``J`` once per run
(:mod:`~analogtorch.ais.coupling_product`): ``"dense"`` a matmul with the dense ``J``,
``"local"`` (``mask="local"`` only) a tiled product that skips the pairs the mask leaves
out, ``"auto"`` (default) local for a local mask of at least
:data:`~analogtorch.ais.coupling_product.LOCAL_MIN_UNITS` units on the CPU, else dense.
Both give the same numbers up to float rounding and the same gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..hardware.profile import HardwareProfile
from ..hardware.random import derive_seed
from .coupling_product import (
    DenseProduct,
    LocalProduct,
    LocalStencil,
    choose_product,
)
from .couplings import Couplings, connectivity_mask
from .integrators import METHODS, Drift, Method, integrate
from .schedule import PiecewiseConstant

# The most units a system may have: its couplings are a dense (n, n) float32 matrix (plus a
# boolean mask), 1.07 GB at n = 16,384 — a 128 x 128 grey image with no hidden units.
MAX_UNITS = 16_384


class AnalogInteractionSystem(nn.Module):
    """Base class of AIS samplers: bookkeeping, couplings, integration, latent → image.

    Subclasses implement ``sample_latent``, ``make_drift`` and ``readout`` (and may override
    ``projection``, a map applied after every integration step).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        *,
        n_hidden: int = 0,
        segments: int = 1,
        steps_per_segment: int = 10,
        dt: float = 0.1,
        method: Method = "rk4",
        mask: str = "dense",
        mask_kwargs: dict[str, Any] | None = None,
        bits: int | None = None,
        profile: HardwareProfile | None = None,
        j_max: float = 1.0,
        coupling_gain: bool = True,
        checkpoint_every: int | None = None,
        time_unit_s: float = 1e-9,
        coupling_product: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape={image_shape!r}: expected (C, H, W), all >= 1")
        if not isinstance(n_hidden, int) or n_hidden < 0:
            raise ValueError(f"n_hidden={n_hidden!r}: must be an integer >= 0")
        if not isinstance(segments, int) or segments < 1:
            raise ValueError(f"segments={segments!r}: must be an integer >= 1 (1 = constant)")
        if not isinstance(steps_per_segment, int) or steps_per_segment < 1:
            raise ValueError(f"steps_per_segment={steps_per_segment!r}: must be an integer >= 1")
        if not dt > 0 or math.isinf(dt):
            raise ValueError(f"dt={dt}: step (time units) must be finite and > 0")
        if method not in METHODS:
            raise ValueError(f"method={method!r}: expected one of {', '.join(map(repr, METHODS))}")
        if not time_unit_s > 0 or math.isinf(time_unit_s):
            raise ValueError(f"time_unit_s={time_unit_s}: must be finite and > 0 seconds")
        self.image_shape = tuple(int(d) for d in image_shape)
        channels, height, width = self.image_shape
        self.n_visible = channels * height * width
        self.n_hidden = n_hidden
        self.n_units = self.n_visible + n_hidden
        if self.n_units > MAX_UNITS:
            raise ValueError(
                f"{self.n_units} units ({self.n_visible} pixels of image_shape="
                f"{self.image_shape} + n_hidden={n_hidden}): at most {MAX_UNITS}; the dense "
                f"coupling matrix alone would take {self.n_units**2 * 4 / 1e9:.1f} GB"
            )
        self.latent_dim = self.n_units
        self.segments = segments
        self.steps_per_segment = steps_per_segment
        self.n_steps = segments * steps_per_segment
        self.dt = float(dt)
        self.method = method
        self.time_unit_s = float(time_unit_s)
        self.checkpoint_every = checkpoint_every
        self.profile = profile
        read_noise = 0.0 if profile is None else profile.read_noise_std
        self.noise_std = read_noise * j_max
        if self.noise_std > 0 and method != "euler_maruyama":
            raise ValueError(
                f"profile read_noise_std={read_noise} adds thermal noise: use "
                f"method='euler_maruyama' (got {method!r}) or a profile without read noise"
            )
        kwargs = dict(mask_kwargs or {})
        if mask == "local":
            if channels != 1 and "grid_shape" not in kwargs:
                raise ValueError(
                    f"mask='local' with {channels} channels: give mask_kwargs['grid_shape'] "
                    "for the layout of the visible units"
                )
            kwargs.setdefault("grid_shape", (height, width))
            kwargs.setdefault("n_visible", self.n_visible)
        generator = torch.Generator().manual_seed(seed)
        self.couplings = Couplings(
            connectivity_mask(mask, self.n_units, **kwargs),
            j_max=j_max,
            bits=bits,
            profile=profile,
            generator=generator,
        )
        stencil = (
            LocalStencil(kwargs["grid_shape"], kwargs.get("radius", 1), self.n_units)
            if mask == "local"
            else None
        )
        choose_product(coupling_product, stencil, self.n_units)  # refuse a bad choice now
        self.coupling_product = coupling_product
        self.stencil = stencil
        self.gain = (
            PiecewiseConstant(segments, (), init=0.5, bounds=(0.0, 1.0)) if coupling_gain else None
        )
        self.noise_generator = torch.Generator().manual_seed(derive_seed(seed, "noise"))

    def reseed(self, seed: int) -> None:
        """Draw the hardware noise of calls without an explicit generator from ``seed``."""
        self.noise_generator = torch.Generator().manual_seed(int(seed))

    def noise_state(self) -> dict[str, object]:
        """Where the hardware-noise stream stands."""
        return {"noise_generator": self.noise_generator.get_state()}

    def load_noise_state(self, state: dict[str, object]) -> None:
        """Continue the hardware-noise stream from :meth:`noise_state`'s ``state``."""
        self.noise_generator.set_state(state["noise_generator"])  # type: ignore[arg-type]

    # -- subclass interface ---------------------------------------------------------------

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial states ``(n, n_units)``."""
        raise NotImplementedError

    def make_drift(self, couplings: torch.Tensor) -> Drift:
        """Drift ``F(k, s)`` on segment ``k`` for the effective coupling matrix of this run."""
        raise NotImplementedError

    def readout(self, visible: torch.Tensor) -> torch.Tensor:
        """Pixels in ``[0, 1]`` from the visible units' final state ``(n, n_visible)``."""
        raise NotImplementedError

    def projection(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Map applied to the state after every step (e.g. amplitude clipping); default none."""
        return None

    # -- shared ---------------------------------------------------------------------------

    def set_sampling_steps(self, n_steps: int) -> None:
        """Integrate ``n_steps`` steps from now on instead of the trained ``K ·
        steps_per_segment`` (a probe of the sampling horizon; ``duration_s`` follows). Steps
        past the trained horizon hold the last segment's controls (:meth:`segment_of`)."""
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r}: must be an integer >= 1")
        self.n_steps = n_steps

    @property
    def duration_s(self) -> float:
        """Physical sampling time of one image, ``n_steps · dt · time_unit_s`` (seconds)."""
        return self.n_steps * self.dt * self.time_unit_s

    @property
    def has_noise(self) -> bool:
        """True when the profile adds programming or thermal noise (needs a generator)."""
        prog = self.profile is not None and self.profile.has_weight_noise
        return prog or self.noise_std > 0

    def coupling_matrix(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Effective ``J`` (n_units, n_units), per time unit, without the gain; noiseless
        design target unless a generator is given (e.g. for energy estimation)."""
        return self.couplings(generator)

    def segment_of(self, step: int) -> int:
        """Control segment ``min(step // steps_per_segment, K − 1)`` of integration step."""
        return min(step // self.steps_per_segment, self.segments - 1)

    def product(self, couplings: torch.Tensor) -> DenseProduct | LocalProduct:
        """The map ``signal ↦ signal @ J^T`` for the effective ``couplings`` of a run, local
        or dense as :attr:`coupling_product` asks (``"auto"``: by size and device)."""
        kind = choose_product(
            self.coupling_product, self.stencil, self.n_units, couplings.device.type
        )
        if kind == "local":
            return LocalProduct(couplings, self.stencil)
        return DenseProduct(couplings)

    @staticmethod
    def couple(
        product: Callable[[torch.Tensor], torch.Tensor],
        gains: torch.Tensor | None,
        segment: int,
        signal: torch.Tensor,
    ) -> torch.Tensor:
        """``g_k (J s)`` for row-vector states ``signal`` (n, n_units): ``product(signal)``
        (``signal @ J^T``, see :meth:`product`) times the gain of ``segment``."""
        out = product(signal)
        return out if gains is None else out * gains[segment]

    def gains(self) -> torch.Tensor | None:
        """Coupling gain per segment ``(K,)``, or ``None`` without a gain control."""
        return None if self.gain is None else self.gain()

    def evolve(
        self,
        state: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        save_every: int | None = None,
    ) -> torch.Tensor:
        """Run the dynamics from ``state`` (n, n_units) for ``n_steps``; the final state, or
        the trajectory with ``save_every`` (see :func:`~analogtorch.ais.integrators.integrate`).

        Programming noise is drawn first, then the thermal increments, all from
        ``generator`` (default: the system's own stream, see :meth:`reseed`).
        """
        if state.dim() != 2 or state.shape[1] != self.n_units:
            raise ValueError(
                f"state shape {tuple(state.shape)}: expected (n, n_units={self.n_units})"
            )
        generator = self.noise_generator if generator is None else generator
        drift = self.make_drift(self.couplings(generator))
        return integrate(
            drift,
            state,
            dt=self.dt,
            n_steps=self.n_steps,
            method=self.method,
            noise_std=self.noise_std,
            generator=generator,
            checkpoint_every=self.checkpoint_every,
            segment_fn=self.segment_of,
            project=self.projection(),
            save_every=save_every,
        )

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images ``(n, C, H, W)`` in ``[0, 1]`` from latent initial states ``z`` (n, n_units)."""
        final = self.evolve(z, generator)
        pixels = self.readout(final[:, : self.n_visible])
        return pixels.reshape(z.shape[0], *self.image_shape)

    def parameter_counts(self) -> dict[str, int]:
        """Physical parameters: coupling devices (mask edges, not ``W``'s n² entries) and
        every other learned tensor by name, plus ``"total"``."""
        counts = {"couplings": self.couplings.n_present()}
        for name, param in self.named_parameters():
            if not name.startswith("couplings."):
                counts[name.removesuffix(".raw")] = param.numel()
        counts["total"] = sum(counts.values())
        return counts

    def extra_repr(self) -> str:
        return (
            f"image_shape={self.image_shape}, n_hidden={self.n_hidden}, "
            f"segments={self.segments}, steps_per_segment={self.steps_per_segment}, "
            f"dt={self.dt}, method={self.method!r}, duration_s={self.duration_s:.3g}, "
            f"noise_std={self.noise_std:.3g}, checkpoint_every={self.checkpoint_every}, "
            f"coupling_product={self.coupling_product!r}"
        )
