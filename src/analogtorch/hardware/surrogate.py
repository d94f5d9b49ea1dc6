"""The surrogate forward ``S(x, W) = Q(W) x + eps + C(x)``: the one analog MVM model.

Every consumer (analog layers, the DEQ core, AIS couplings, the HIL twin) calls
:func:`surrogate_forward`. In normalised units (inputs in units of the DAC full scale
``r_in``, conductances in units of ``g_max``, currents in units of ``g_max * v_read``):

1. DAC:       ``x_hat = Q_dac(x) / r_in``, ``2**dac_bits`` signed levels over ``[-r_in, r_in)``;
              then the device transfer curve ``f(x_hat)``.
2. Weights:   ``w_hat = Q(W / s)`` per output row scale ``s`` (or a chip's programmed,
              drifted conductances), then crosstalk ``C`` and IR drop (``circuit.py``).
3. Crossbar:  per-tile partial sums ``y_t = w_hat_t x_hat_t``.
4. Noise:     ``eps_t ~ N(0, var_t)`` per sample and output with
              ``var_t = sigma_w^2 sum_i x_hat_i^2 + sigma_out^2 + k_shot sum_i |w_hat_i x_hat_i|``,
              where ``sigma_w^2`` is the programming (training only: a chip's is frozen into
              its weights) plus read-noise variance of one weight; a conductance-dependent
              ``sigma_w`` uses ``sum_i sigma_w(w_hat_i)^2 x_hat_i^2``. Drawing the noise in
              output space is exact in distribution for independent Gaussian weight noise
              (each output of each sample is a sum of independent Gaussians) and costs one
              Gaussian per output instead of one per weight.
5. ADC:       ``Q_adc(y_t + eps_t)``, ``2**adc_bits`` signed levels over ``[-r_out, r_out)``
              per tile, then digital accumulation and rescaling ``y = s * r_in * sum_t``.

All roundings use straight-through gradients (``quantize.py``); noise is reparameterised,
so gradients flow to the weights, the inputs and the learned ranges ``r_in``, ``r_out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .circuit import apply_transfer_curve, circuit_weights
from .mapping import normalized_weights, weight_scale
from .noise import prog_noise_variance, read_noise_std_at
from .profile import HardwareProfile
from .quantize import integer_codes
from .tiling import RowTiling


class TiledMVM(Protocol):
    """Partial-sum products of one layer type (see ``tiling.py``)."""

    tiling: RowTiling
    tile_dim: int

    def partial(self, x: torch.Tensor, w_flat: torch.Tensor) -> torch.Tensor: ...

    def tile_sum(self, x: torch.Tensor) -> torch.Tensor: ...

    def scale_shape(self, n_out: int) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class ChipRead:
    """A programmed chip's state for one layer at one time since programming."""

    profile: HardwareProfile
    w_hat: torch.Tensor  # (out, n_rows) effective normalised weights (drift, circuit applied)
    scale: torch.Tensor  # (out, 1) digital rescaling after the ADC, drift compensation included
    read_noise_std: float  # sigma_r(t), fraction of g_max
    generator: torch.Generator  # fresh read noise per read, reproducible per chip seed


def _noise_variance(
    x_hat: torch.Tensor,
    w_hat: torch.Tensor,
    mvm: TiledMVM,
    profile: HardwareProfile,
    weight_var_const: float,
    weight_var_matrix: torch.Tensor | None,
    adc_tiles: int,
) -> torch.Tensor | float:
    """Output-space noise variance per tile partial sum (normalised units)."""
    var: torch.Tensor | float = profile.output_noise_std**2 * adc_tiles
    if weight_var_matrix is not None:
        var = var + mvm.partial(x_hat.square(), weight_var_matrix)
    elif weight_var_const > 0.0:
        var = var + weight_var_const * mvm.tile_sum(x_hat.square())
    if profile.shot_noise_coeff > 0.0:
        var = var + profile.shot_noise_coeff * mvm.partial(x_hat.abs(), w_hat.abs())
    return var


def surrogate_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    mvm: TiledMVM,
    profile: HardwareProfile,
    input_range: torch.Tensor,
    output_range: torch.Tensor,
    *,
    noise: bool,
    generator: torch.Generator | None = None,
    chip: ChipRead | None = None,
    adc_tiles: int = 1,
) -> torch.Tensor:
    """Analog layer output ``y`` (without bias) in the units of ``W x``.

    Args:
        x: layer input, (batch, in) for linear or (batch, C, H, W) for convolution.
        weight: digital weights (out, ...) — ignored when ``chip`` is given.
        mvm: the tiled product for this layer (one tile when the ADC is ideal).
        profile: hardware profile (the chip's when ``chip`` is given).
        input_range: DAC full scale ``r_in`` (scalar tensor, input units).
        output_range: ADC full scale ``r_out`` (scalar tensor, units of g_max*v_read).
        noise: draw training noise (programming + read + output) from ``generator``.
        chip: a programmed chip's read state; its read noise is always drawn.
        adc_tiles: number of physical tiles whose ADC noise adds up when ``mvm`` is
            untiled (ideal ADC: the tiles' partial sums are not digitised separately).
    """
    if profile.dac_bits is not None:
        half = float(1 << (profile.dac_bits - 1))
        x_hat = integer_codes(x * (half / input_range), profile.dac_bits) * (1.0 / half)
    else:
        x_hat = x / input_range
    x_hat = apply_transfer_curve(x_hat, profile)

    weight_var_matrix = None
    if chip is None:
        scale = weight_scale(weight, profile)
        w_hat = circuit_weights(normalized_weights(weight, scale, profile), mvm.tiling, profile)
        weight_var_const = 0.0
        if noise:
            read_var = read_noise_std_at(profile, 0.0) ** 2
            if profile.prog_noise_poly or profile.mismatch_std > 0:
                weight_var_matrix = (
                    prog_noise_variance(profile, w_hat)
                    + read_var
                    + profile.mismatch_std**2 * w_hat.square()
                )
            else:
                weight_var_const = profile.prog_noise_std**2 + read_var
    else:
        scale, w_hat, generator = chip.scale, chip.w_hat, chip.generator
        weight_var_const = chip.read_noise_std**2

    y = mvm.partial(x_hat, w_hat)
    if noise or chip is not None:
        var = _noise_variance(
            x_hat, w_hat, mvm, profile, weight_var_const, weight_var_matrix, adc_tiles
        )
        if isinstance(var, torch.Tensor) or var > 0.0:
            eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            if isinstance(var, torch.Tensor):
                y = torch.addcmul(y, var.clamp_min(1e-30).sqrt(), eps)
            else:
                y = y + var**0.5 * eps
    out_scale = scale.reshape(mvm.scale_shape(scale.shape[0])) * input_range
    if profile.adc_bits is not None:
        half = float(1 << (profile.adc_bits - 1))
        y = integer_codes(y * (half / output_range), profile.adc_bits)
        out_scale = out_scale * (output_range / half)
    return y.sum(dim=mvm.tile_dim) * out_scale
