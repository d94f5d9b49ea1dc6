"""Regularisers of a hybrid DEQ's analog core (added to the task loss, each with its λ).

* **Physics — feedback sparsity**: ``R_s = mean |W_z|`` (L1; fewer/smaller feedback
  conductances, cf. ``losses.Sparsity``).
* **Robustness — Jacobian norm** (Bai, Koltun, Kolter, "Stabilizing Equilibrium Models by
  Jacobian Regularization", ICML 2021): ``R_J = ‖J_f(z*)‖_F² / n`` estimated per batch by
  Hutchinson's trace estimator ``E_v ‖vᵀ J‖² / n`` with ``v ~ N(0, I)`` (one VJP with
  ``create_graph=True``). A smaller ``‖J‖`` means a smaller noise gain ``(I − J)^{-1}`` at the
  equilibrium and fewer solver iterations.
* **Precision — bit depth**: ``losses.BitDepthPenalty`` on the digital and analog weights.
* **Energy** (from the energy model, ``energy/layer_cost.py``), per inference in nJ:
  ``R_E = n_iter · (t_read V² g_max Σ_ij ĝ_ij a_j + n_DAC E_DAC + n_ADC E_ADC)`` where ``ĝ``
  are the feedback cell conductances (differentiable, straight-through through the weight
  quantiser), ``a_j`` the row activity of the state (``E|z_j/r|`` for PWM inputs, ``E(z_j/r)²``
  for amplitude inputs) and ``n_iter`` the last solve's iterations. Gradients flow through
  the crossbar term; the converter term is constant per iteration, so only fewer
  iterations (a smaller contraction factor, the Jacobian term) lower it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..energy.converters import adc_energy_j, converter_bits, dac_energy_j
from ..energy.layer_cost import cell_conductance
from ..losses import Sparsity
from .cores import AnalogCore


def feedback_sparsity(core: AnalogCore) -> torch.Tensor:
    """``mean |W_z|`` of the core's feedback crossbar (``losses.Sparsity``, L1)."""
    return Sparsity("l1")(core.feedback.weight)


def jacobian_penalty(
    core: AnalogCore,
    z_star: torch.Tensor,
    u: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hutchinson estimate of ``‖∂f/∂z (z*)‖_F² / n``, averaged over the batch."""
    z = z_star.detach().requires_grad_(True)
    with torch.enable_grad():
        fz = core(z, u)
        v = torch.randn(fz.shape, generator=generator, dtype=fz.dtype, device=fz.device)
        (vjp,) = torch.autograd.grad(fz, z, v, create_graph=True)
    return vjp.square().sum() / z.numel()


def core_energy_nj(core: AnalogCore, z_star: torch.Tensor, iterations: int) -> torch.Tensor:
    """Energy of the core's ``iterations`` crossbar reads for this batch, nJ per inference."""
    layer = core.feedback
    profile = layer.profile
    c = profile.energy
    g = cell_conductance(layer.weight, profile, differentiable=True)  # (out, rows)
    x = z_star / layer.input_range.detach().abs().clamp_min(1e-12)
    x = x.clamp(-1.0, 1.0)
    activity = (x.abs() if c.input_encoding == "pwm" else x.square()).mean(0)  # (rows,)
    joule_per_unit = profile.t_read_seconds * profile.v_read_volts**2 * profile.g_max_siemens
    crossbar = joule_per_unit * (g.sum(0) * activity).sum()
    rows, cols = layer.in_features, layer.out_features
    col_tiles = math.ceil(cols / profile.tile_cols)
    row_tiles = layer.row_tiling(profile).n_tiles
    converters = rows * col_tiles * dac_energy_j(
        converter_bits(profile.dac_bits, c), c
    ) + cols * row_tiles * adc_energy_j(converter_bits(profile.adc_bits, c), c)
    return iterations * (crossbar + converters) * 1e9


@dataclass(frozen=True)
class RegularizerWeights:
    """λ of each regulariser (0 switches it off)."""

    sparsity: float = 0.0
    jacobian: float = 0.0
    precision: float = 0.0
    energy: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sparsity", "jacobian", "precision", "energy"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value}: a regulariser weight must be finite and >= 0")

    @property
    def active(self) -> bool:
        return any((self.sparsity, self.jacobian, self.precision, self.energy))
