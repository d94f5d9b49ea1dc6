"""Contractivity control: keep ``z ↦ σ(W z + u)`` a contraction so the equilibrium exists,
is unique and every solver (and the analog relaxation) converges to it.

For an activation with Lipschitz constant ``L_σ`` (applied elementwise) and any norm,
``‖f(z) − f(z')‖ ≤ L_σ ‖W‖ ‖z − z'‖`` (Banach), so ``L_σ ‖W‖ ≤ γ < 1`` is sufficient.
Two norms are offered, both enforced by projecting ``W`` after each optimizer step:

* ``"spectral"``: ``‖W‖₂`` (largest singular value, computed exactly): the usual DEQ choice;
* ``"inf"``: ``‖W‖_∞ = max_j Σ_i |W_ji|`` (largest row L1 norm), a per-row rescaling that
  matches the per-row conductance scale of a crossbar and costs one pass over ``W``.

The bound holds for the *programmed* weights; quantisation moves each weight by at most
half a step, so the analog map's factor can exceed ``γ`` by ``L_σ ‖ΔW‖`` (reported by
:func:`contraction_factor` when given the effective weights).
"""

from __future__ import annotations

from typing import Literal

import torch

NormKind = Literal["spectral", "inf"]
NORMS: tuple[NormKind, ...] = ("spectral", "inf")


def operator_norm(weight: torch.Tensor, norm: NormKind = "spectral") -> torch.Tensor:
    """``‖W‖₂`` or ``‖W‖_∞`` of a (out, in) matrix, as a 0-d tensor (no gradient)."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: use one of {NORMS}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight contains NaN or inf: its operator norm is undefined")
    w = weight.detach().reshape(weight.shape[0], -1)
    if norm == "spectral":
        return torch.linalg.matrix_norm(w.double(), ord=2).to(w.dtype)
    return w.abs().sum(dim=1).amax()


@torch.no_grad()
def project_contractive_(weight: torch.Tensor, bound: float, norm: NormKind = "spectral") -> float:
    """Rescale ``weight`` in place so that ``‖W‖ ≤ bound``; returns ``‖W‖`` before.

    ``"spectral"`` scales the whole matrix; ``"inf"`` scales only the rows whose L1 norm
    exceeds ``bound`` (the smallest change that meets the bound).
    """
    if not bound > 0:
        raise ValueError(f"bound={bound}: must be > 0")
    before = float(operator_norm(weight, norm))
    if norm == "spectral":
        if before > bound:
            weight.mul_(bound / before)
        return before
    row_l1 = weight.abs().reshape(weight.shape[0], -1).sum(dim=1)
    factor = (bound / row_l1.clamp_min(bound)).to(weight.dtype)
    weight.mul_(factor.view(-1, *[1] * (weight.dim() - 1)))  # in place, any memory layout
    return before


def contraction_factor(
    weight: torch.Tensor, activation_lipschitz: float, norm: NormKind = "spectral"
) -> float:
    """The guaranteed contraction factor ``L_σ ‖W‖`` of ``z ↦ σ(W z + u)``."""
    return activation_lipschitz * float(operator_norm(weight, norm))
