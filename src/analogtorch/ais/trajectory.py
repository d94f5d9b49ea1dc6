"""Where an AIS's sampling time goes: pixel commitment and the couplings' share of the drift.

Along sampled trajectories ``x(t)``, at every integration step ``t = s·dt`` of the horizon:

* ``committed(t)``: the share of visible units whose pixel ``p = readout(x_i(t))`` lies
  within ``tolerance`` of black or white, ``min(p, 1 − p) ≤ tolerance``;
* ``coupling(t) = ⟨|f_i(x; J) − f_i(x; 0)|⟩`` and ``local(t) = ⟨|f_i(x; 0)|⟩`` over the
  visible units and the batch: the drift ``f`` of the current control segment split into the
  part the couplings carry and the rest (detuning and injection of the oscillators; loss,
  pump and bias of the Ising machine), in state units per time unit.

A generator that reads its pixels out while few are committed samples a transient, not a
settled state; one whose coupling term is small against the local one draws little of its
image from the interactions. The split uses the design couplings (no programming noise);
the trajectory is the system's own, noise included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..figures import pyplot, save_figure, suptitle
from .system import AnalogInteractionSystem


@dataclass(frozen=True)
class TrajectoryProfile:
    """Per integration step: time (s), committed share, mean |coupling| and |local| drift."""

    time_s: list[float]
    committed: list[float]
    coupling: list[float]
    local: list[float]

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)


def profile_trajectory(
    system: AnalogInteractionSystem,
    n: int = 256,
    seed: int = 0,
    tolerance: float = 0.05,
) -> TrajectoryProfile:
    """Commitment and drift split (module docstring) of ``n`` trajectories from latents
    and noise drawn with ``seed``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: must be an integer >= 1")
    if not 0 < tolerance < 0.5:
        raise ValueError(f"tolerance={tolerance}: must lie in (0, 0.5) (a pixel fraction)")
    generator = torch.Generator().manual_seed(seed)
    visible = slice(0, system.n_visible)
    with torch.no_grad():
        latent = system.sample_latent(n, generator)
        states = system.evolve(latent, generator, save_every=1)
        design = system.coupling_matrix()
        full = system.make_drift(design)
        uncoupled = system.make_drift(torch.zeros_like(design))
        rows = []
        for step, state in enumerate(states):
            segment = system.segment_of(min(step, system.n_steps - 1))
            local = uncoupled(segment, state)[:, visible]
            coupling = full(segment, state)[:, visible] - local
            pixels = system.readout(state[:, visible])
            committed = torch.minimum(pixels, 1 - pixels) <= tolerance
            rows.append(
                (
                    step * system.dt * system.time_unit_s,
                    committed.float().mean().item(),
                    coupling.abs().mean().item(),
                    local.abs().mean().item(),
                )
            )
    time_s, committed_share, coupling_mean, local_mean = (list(c) for c in zip(*rows, strict=True))
    return TrajectoryProfile(time_s, committed_share, coupling_mean, local_mean)


def plot_profiles(profiles: dict[str, TrajectoryProfile], path: str | Path, title: str) -> Path:
    """Committed share (left) and mean |coupling| (solid) / |local| (dashed) drift (right)
    against sampling time in ns, one colour per labelled profile."""
    plt = pyplot()
    fig, (ax_commit, ax_drift) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, (label, profile) in enumerate(profiles.items()):
        ns = [1e9 * t for t in profile.time_s]
        style = {"color": f"C{index}"}
        ax_commit.plot(ns, profile.committed, "o-", ms=3, label=label, **style)
        ax_drift.plot(ns, profile.coupling, "o-", ms=3, label=f"{label}: coupling", **style)
        ax_drift.plot(ns, profile.local, "--", label=f"{label}: local", **style)
    ax_commit.set_ylabel("share of pixels committed (near 0 or 1)")
    ax_commit.set_ylim(0, 1)
    ax_drift.set_ylabel("mean |drift| on visible units (per time unit)")
    for ax in (ax_commit, ax_drift):
        ax.set_xlabel("sampling time (ns)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    suptitle(fig, title)
    fig.tight_layout()
    return save_figure(fig, path)
