"""Programmable symmetric couplings ``J`` of an analog interaction system, and their graphs.

A coupling ``J_ij`` is a rate (rad/s for phase oscillators, 1/s for Ising amplitudes; in a
sampler with normalised time, per time unit). Each unordered pair ``{i, j}`` with an edge in
the connectivity mask is one programmable device, so ``J`` is symmetric and ``J_ij = J_ji``
is one physical value. The effective matrix is built in this order:

1. bound:       ``J_raw = j_max · tanh(W)`` from an unconstrained parameter ``W`` (tanh, not
                clamp, so gradients never vanish at the range limit);
2. symmetrise:  ``(J_raw + J_raw^T) / 2`` (still inside ``±j_max``);
3. mask:        entries without a device are exactly ``0`` (no diagonal: no self-coupling);
4. quantise:    with ``bits`` set, ``J / j_max`` is rounded to the signed grid of step
                ``1 / (2**(bits-1) − 1)`` (:func:`~analogtorch.hardware.quantize.weight_step`)
                with straight-through gradients, so ``J`` takes at most ``2**bits − 1``
                values ``k · j_max / (2**(bits-1) − 1)``, ``|k| <= 2**(bits-1) − 1``. Code
                ``0`` is shared by a device programmed to zero and an absent device;
5. programme:   with a profile with programming noise and a ``generator``, one draw per
                device ``J_ij += j_max · sigma_p(J_ij / j_max) · N(0, 1)`` with
                ``sigma_p^2`` from :func:`~analogtorch.hardware.noise.prog_noise_variance`
                (fractions of the full-scale coupling). Noise is drawn once per call: a chip
                is programmed once and then runs many time steps with the same devices.
                Absent devices stay exactly 0; the noisy value is not clipped to ``±j_max``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..hardware.noise import prog_noise_variance
from ..hardware.profile import HardwareProfile
from ..hardware.quantize import quantize, weight_step
from ..hardware.random import draw_like

MASK_KINDS = ("dense", "local", "random", "block")


def connectivity_mask(
    kind: str,
    n_units: int,
    *,
    grid_shape: tuple[int, int] | None = None,
    n_visible: int | None = None,
    radius: int = 1,
    degree: int = 8,
    block_size: int = 16,
    seed: int = 0,
) -> torch.Tensor:
    """Boolean ``(n_units, n_units)`` adjacency: symmetric, zero diagonal.

    * ``"dense"``:  all pairs.
    * ``"local"``:  the first ``H·W`` units (the visible units, ``grid_shape = (H, W)``,
      row-major) sit on a grid and couple to the units within Chebyshev distance
      ``radius`` (``radius = 1``: the 8-neighbourhood). The remaining (hidden) units couple
      to every visible unit and to each other — a few global units that carry long-range
      correlations, as routed bus lines would. ``n_visible``, when given, must equal ``H·W``.
    * ``"random"``: an Erdős–Rényi graph with edge probability ``degree / (n_units − 1)``
      (mean degree ``degree``), drawn from ``torch.Generator().manual_seed(seed)``.
    * ``"block"``:  block-diagonal, consecutive blocks of ``block_size`` units (the last
      block may be smaller), all-to-all inside a block.
    """
    if kind not in MASK_KINDS:
        raise ValueError(
            f"kind={kind!r}: unknown connectivity; expected one of "
            + ", ".join(repr(k) for k in MASK_KINDS)
        )
    if not isinstance(n_units, int) or n_units < 1:
        raise ValueError(f"n_units={n_units!r}: must be an integer >= 1")
    eye = torch.eye(n_units, dtype=torch.bool)
    if kind == "dense":
        return ~eye
    if kind == "local":
        return _local_mask(n_units, grid_shape, n_visible, radius)
    if kind == "random":
        if not 0 <= degree <= n_units - 1:
            raise ValueError(
                f"degree={degree}: mean number of neighbours must be in [0, n_units - 1 = "
                f"{n_units - 1}]"
            )
        gen = torch.Generator().manual_seed(seed)
        p = degree / (n_units - 1) if n_units > 1 else 0.0
        upper = torch.triu(torch.rand(n_units, n_units, generator=gen) < p, diagonal=1)
        return upper | upper.T
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r}: must be an integer >= 1")
    block = torch.arange(n_units) // block_size
    return (block[:, None] == block[None, :]) & ~eye


def _local_mask(
    n_units: int, grid_shape: tuple[int, int] | None, n_visible: int | None, radius: int
) -> torch.Tensor:
    if grid_shape is None or len(grid_shape) != 2 or min(grid_shape) < 1:
        raise ValueError(
            f"grid_shape={grid_shape!r}: the 'local' mask needs the visible grid (H, W) with "
            "H, W >= 1"
        )
    height, width = grid_shape
    n_grid = height * width
    if n_visible is not None and n_visible != n_grid:
        raise ValueError(
            f"grid_shape={grid_shape} has {n_grid} sites but n_visible={n_visible}; the "
            "visible units must fill the grid exactly"
        )
    if n_grid > n_units:
        raise ValueError(f"grid_shape={grid_shape} needs {n_grid} units but n_units={n_units}")
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ValueError(f"radius={radius!r}: Chebyshev neighbourhood radius, an integer >= 0")
    radius = min(radius, max(height, width))  # beyond the grid: every site is a neighbour
    idx = torch.arange(n_grid, dtype=torch.int32)
    row, col = idx // width, idx % width
    near_rows = (row[:, None] - row[None, :]).abs() <= radius
    near_cols = (col[:, None] - col[None, :]).abs() <= radius
    mask = torch.ones(n_units, n_units, dtype=torch.bool)
    mask[:n_grid, :n_grid] = near_rows & near_cols
    mask.fill_diagonal_(False)
    return mask


class Couplings(nn.Module):
    """Symmetric, masked, bounded, optionally quantised and programmed coupling matrix ``J``.

    ``forward(generator)`` returns the effective ``(n, n)`` matrix (module docstring for the
    order of operations). With ``generator=None`` no programming noise is drawn: the result
    is the design target the chip would be programmed to.

    Args:
        mask: boolean ``(n, n)`` adjacency (symmetric, zero diagonal), e.g. from
            :func:`connectivity_mask`; stored as a buffer.
        j_max: full-scale coupling rate ``|J| <= j_max`` (rad/s or 1/s, or per time unit).
        bits: coupling resolution (2 … 16), ``None`` = analog.
        profile: hardware profile; only its programming-noise fields
            (``prog_noise_std``, ``prog_noise_poly``) are used here.
        init_std: std of the initial ``W`` (so ``J ≈ j_max · W`` for small ``W``); default
            ``1 / sqrt(mean degree)``, which keeps ``Σ_j J_ij s_j`` of order ``j_max``.
        generator: source of the initial ``W`` (global RNG when ``None``).
    """

    def __init__(
        self,
        mask: torch.Tensor,
        *,
        j_max: float = 1.0,
        bits: int | None = None,
        profile: HardwareProfile | None = None,
        init_std: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
            raise ValueError(f"mask shape {tuple(mask.shape)}: must be square (n, n)")
        mask = mask.to(torch.bool)
        if not torch.equal(mask, mask.T):
            raise ValueError("mask must be symmetric: a coupling device joins a pair both ways")
        if bool(mask.diagonal().any()):
            raise ValueError("mask must have a zero diagonal (no self-coupling)")
        if not j_max > 0 or math.isinf(j_max):
            raise ValueError(f"j_max={j_max}: full-scale coupling must be finite and > 0")
        if bits is not None:
            weight_step(bits)  # validates the range
        self.n_units = mask.shape[0]
        self.j_max = float(j_max)
        self.bits = bits
        self.profile = profile
        self.register_buffer("mask", mask)
        self.weight = nn.Parameter(torch.empty(self.n_units, self.n_units))
        self.reset_parameters(init_std, generator)

    @torch.no_grad()
    def reset_parameters(
        self, init_std: float | None = None, generator: torch.Generator | None = None
    ) -> None:
        """``W ~ N(0, init_std^2)`` (see class docstring for the default)."""
        if init_std is None:
            mean_degree = 2 * self.n_present() / self.n_units
            init_std = 1.0 / math.sqrt(max(mean_degree, 1.0))
        noise = torch.randn(self.weight.shape, generator=generator)
        self.weight.copy_(noise.to(self.weight) * init_std)

    @torch.no_grad()
    def assign(self, target: torch.Tensor) -> None:
        """Set ``W`` so that the unquantised, noiseless ``J`` equals ``target`` on the mask.

        ``target`` must be symmetric with ``|target| < j_max``; entries off the mask are
        ignored (they stay 0).
        """
        target = target.to(self.weight)
        if target.shape != self.weight.shape or not torch.allclose(target, target.T):
            raise ValueError(
                f"target shape {tuple(target.shape)}: need a symmetric "
                f"({self.n_units}, {self.n_units}) matrix"
            )
        if not bool((target.abs() < self.j_max).all()):
            raise ValueError(f"target couplings must satisfy |J| < j_max = {self.j_max}")
        self.weight.copy_(torch.atanh(target / self.j_max))

    def normalized(self) -> torch.Tensor:
        """Noiseless ``J / j_max`` after bounding, symmetrising, masking and quantising."""
        w = torch.tanh(self.weight)
        w = 0.5 * (w + w.T)
        w = torch.where(self.mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
        if self.bits is not None:
            w = quantize(w, self.bits, weight_step(self.bits))
        return w

    def forward(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Effective coupling matrix ``J`` (n, n), units of ``j_max``; one programming-noise
        draw per device from ``generator`` when the profile has programming noise."""
        w = self.normalized()
        if generator is not None and self.profile is not None and self.profile.has_weight_noise:
            std = prog_noise_variance(self.profile, w.detach()).sqrt()
            eps = draw_like("normal", w.shape, generator, w)
            eps = torch.triu(eps, diagonal=1)
            w = w + torch.where(self.mask, std * (eps + eps.T), torch.zeros_like(w))
        return self.j_max * w

    def n_present(self) -> int:
        """Number of coupling devices: edges of the mask, one per unordered pair ``{i, j}``."""
        return int(torch.triu(self.mask, diagonal=1).sum())

    def extra_repr(self) -> str:
        profile = None if self.profile is None else self.profile.name
        return (
            f"n_units={self.n_units}, devices={self.n_present()}, j_max={self.j_max}, "
            f"bits={self.bits}, profile={profile}"
        )
