"""The surrogate forward ``S(x, W) = Q(W) x + eps + C(x)``: the one analog MVM model.

Every consumer (analog layers, the DEQ core, AIS couplings, the HIL twin) calls
:func:`surrogate_forward`. In normalised units (inputs in units of the DAC full scale
``r_in``, conductances in units of ``g_max``, currents in units of ``g_max * v_read``):

1. DAC:       ``x_hat = Q_dac(x) / r_in``, ``2**dac_bits`` signed levels over ``[-r_in, r_in)``;
              then the device transfer curve ``f(x_hat)``.
2. Weights:   ``w_hat = Q(W / s)`` per output row scale ``s`` (or a chip's programmed,
              drifted conductances), then crosstalk ``C`` and IR drop (``circuit.py``);
              ``Q`` rounds stochastically when the caller passes a ``rounding_source``
              (a layer's training forward on ``weight_rounding='stochastic'``).
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

from .adc import adc_sum_of_tiles, adc_tile_sum, digital_rescale
from .circuit import apply_transfer_curve, circuit_weights
from .mapping import normalized_weights, weight_scale
from .noise import prog_noise_variance, read_noise_std_at, weight_space_noise
from .product_weights import product_weights
from .profile import HardwareProfile
from .quantize import integer_codes
from .random import NoiseSource
from .tiling import LinearMVM, RowTiling


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
    source: NoiseSource  # fresh read noise per read, reproducible per chip seed


def _noise_variance(
    x_s: torch.Tensor,
    x_unit: torch.Tensor | float,
    w_hat: torch.Tensor,
    mvm: TiledMVM,
    profile: HardwareProfile,
    weight_var_const: float,
    weight_var_matrix: torch.Tensor | None,
    adc_tiles: int,
) -> torch.Tensor | float:
    """Noise variance of each tile partial sum, in units of ``(x_unit g_max v_read)^2``.

    With ``x_hat = x_s * x_unit``: ``sigma_out^2 / x_unit^2 + sigma_w^2 sum x_s^2 +
    k_shot sum |w_hat x_s| / x_unit`` (see the module docstring for the physics).
    """
    var: torch.Tensor | float = 0.0
    if profile.output_noise_std > 0.0:
        var = profile.output_noise_std**2 * adc_tiles / x_unit**2
    if weight_var_matrix is not None:
        var = var + mvm.partial(x_s.square(), weight_var_matrix)
    elif weight_var_const > 0.0:
        var = var + weight_var_const * mvm.tile_sum(x_s.square())
    if profile.shot_noise_coeff > 0.0:
        var = var + (profile.shot_noise_coeff / x_unit) * mvm.partial(x_s.abs(), w_hat.abs())
    return var


@dataclass(frozen=True)
class _Weights:
    """The weights of one forward and what the noise model needs of them.

    Either ``w_mat``, the mapped normalised weights (a chip's, inference's cached ones, or
    any with circuit effects), or ``raw`` = (flat digital W, per-batch normals or None,
    stochastic-rounding uniforms or None) for the fused training path
    (:mod:`.product_weights`).
    """

    scale: torch.Tensor  # (out, 1) digital row scale s
    w_mat: torch.Tensor | None = None  # (out, n_rows) w_hat
    raw: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None
    var_const: float = 0.0  # per-weight noise variance drawn in output space
    var_matrix: torch.Tensor | None = None  # same, conductance-dependent (out, n_rows)

    def product(
        self,
        column: torch.Tensor | float,
        profile: HardwareProfile,
        cache: dict[str, object] | None,
    ) -> torch.Tensor:
        """The weights times ``column`` (ADC codes per unit, a scalar or (out, 1))."""
        if self.raw is not None:
            weight, z, dither = self.raw
            return product_weights(weight, self.scale, column, z, profile, dither)
        assert self.w_mat is not None
        if not isinstance(column, torch.Tensor):
            return self.w_mat if column == 1.0 else self.w_mat * column
        return _cached_product(self.w_mat, column, cache)


def _training_weights(
    weight: torch.Tensor,
    tiling: RowTiling,
    profile: HardwareProfile,
    noise: bool,
    source: NoiseSource | None,
    cache: dict[str, object] | None,
    dither: torch.Tensor | None,
) -> _Weights:
    """Mapped weights of a layer's own forward (no chip), with its training noise model;
    ``dither`` (``U[0, 1)`` of the flat weights' shape) rounds them stochastically.

    Programming noise ``sigma_p(w_hat)`` and mismatch ``m |w_hat|`` are drawn per sample in
    output space (``training_weight_noise='per-sample'``: their variance enters the noise
    of every partial sum) or once per forward in weight space (``'per-batch'``:
    ``w = w_hat + sqrt(sigma_p^2 + m^2 w_hat^2) z``, shared by the batch like one chip).
    Read noise is always fresh per sample.
    """
    read_var = read_noise_std_at(profile, 0.0) ** 2 if noise else 0.0
    weight_noise = noise and (profile.has_weight_noise or profile.mismatch_std > 0)
    per_batch = weight_noise and profile.training_weight_noise == "per-batch"
    conductance_noise = noise and (bool(profile.prog_noise_poly) or profile.mismatch_std > 0)
    tracking = torch.is_grad_enabled() and weight.requires_grad
    if tracking and not _has_circuit_effects(profile) and (per_batch or not conductance_noise):
        scale = weight_scale(weight, profile)
        z = None
        if per_batch:
            assert source is not None
            z = source.normal((weight.shape[0], weight[0].numel()), weight.dtype)
        var = read_var if per_batch else (profile.prog_noise_std**2 + read_var if noise else 0.0)
        raw = (weight.reshape(weight.shape[0], -1), z, dither)
        return _Weights(scale, raw=raw, var_const=var)
    scale, w_hat = _mapped_weights(weight, tiling, profile, cache, dither)
    if per_batch:
        assert source is not None
        z = source.normal(w_hat.shape, w_hat.dtype)
        return _Weights(scale, weight_space_noise(w_hat, z, profile), var_const=read_var)
    if conductance_noise:
        var_matrix = (
            prog_noise_variance(profile, w_hat)
            + read_var
            + profile.mismatch_std**2 * w_hat.square()
        )
        return _Weights(scale, w_hat, var_matrix=var_matrix)
    var = profile.prog_noise_std**2 + read_var if noise else 0.0
    return _Weights(scale, w_hat, var_const=var)


def surrogate_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    mvm: TiledMVM,
    profile: HardwareProfile,
    input_range: torch.Tensor,
    output_range: torch.Tensor,
    *,
    noise: bool,
    source: NoiseSource | None = None,
    chip: ChipRead | None = None,
    tiling: RowTiling | None = None,
    bias: torch.Tensor | None = None,
    weight_cache: dict[str, object] | None = None,
    rounding_source: NoiseSource | None = None,
) -> torch.Tensor:
    """Analog layer output ``y = S(x, W) + b`` in the units of ``W x``.

    Args:
        x: layer input, (batch, in) for linear or (batch, C, H, W) for convolution.
        weight: digital weights (out, ...) — ignored when ``chip`` is given.
        mvm: the tiled product for this layer (one tile when the ADC is ideal).
        profile: hardware profile (the chip's when ``chip`` is given).
        input_range: DAC full scale ``r_in`` (scalar tensor, input units).
        output_range: ADC full scale ``r_out`` (scalar tensor, units of g_max*v_read).
        noise: draw training noise (programming + read + output) from ``source``.
        chip: a programmed chip's read state; its read noise is always drawn.
        tiling: the physical tiles (default ``mvm.tiling``). With an ideal ADC the caller
            may compute all tiles in one product (``mvm`` untiled); circuit effects still
            act per physical tile and every tile's read-out noise adds up.
        bias: digital bias added after the ADC, broadcastable to the output.
        weight_cache: a dict owned by the caller; without autograd (inference), the mapped
            weights are kept there and reused while ``weight`` is unchanged.
        rounding_source: draws the ``U[0, 1)`` dither of stochastic weight rounding (one
            draw per weight per call, shared by the batch); None rounds to nearest. Ignored
            with a chip (programmed weights are fixed) or analog weights (no grid).
    """
    tiling = tiling or mvm.tiling
    adc_tiles = tiling.n_tiles if mvm.tiling.n_tiles == 1 else 1
    if noise and chip is None and source is None:
        raise ValueError("noise=True needs a NoiseSource (source=...)")
    # Inputs are carried as x_s in units of x_unit (one DAC code; without a DAC, the input
    # itself with x_unit = 1/r_in), x_hat = x_s * x_unit, so the rescaling folds into the
    # final digital scale instead of costing a pass over the inputs.
    if profile.dac_bits is not None:
        half_in = float(1 << (profile.dac_bits - 1))
        x_s = integer_codes(x, half_in / input_range, profile.dac_bits)
        x_unit = 1.0 / half_in
    else:  # no DAC: x_hat = x / r_in, kept as x with the 1/r_in folded into x_unit
        x_s, x_unit = x, 1.0 / input_range
    if profile.transfer_curve != "linear":
        x_s, x_unit = apply_transfer_curve(x_s * x_unit, profile), 1.0

    if chip is not None:
        source = chip.source
        w = _Weights(chip.scale, chip.w_hat, var_const=chip.read_noise_std**2)
    else:
        dither = None
        if rounding_source is not None and profile.weight_bits is not None:
            dither = rounding_source.uniform((weight.shape[0], weight[0].numel()), weight.dtype)
        w = _training_weights(weight, tiling, profile, noise, source, weight_cache, dither)

    std: torch.Tensor | float | None = None
    # Per-batch training treats the magnitude of the output-space (read, read-out) noise as
    # given: no gradient through it. The exact per-sample mode differentiates everything.
    given_magnitude = chip is None and profile.training_weight_noise == "per-batch"
    if noise or chip is not None:
        var = _noise_variance(
            x_s.detach() if given_magnitude else x_s,
            x_unit,
            w.w_mat,
            mvm,
            profile,
            w.var_const,
            w.var_matrix,
            adc_tiles,
        )
        if isinstance(var, torch.Tensor):
            std = var.clamp_min(1e-30).sqrt()
        elif var > 0.0:
            std = var**0.5
    out_scale = w.scale.reshape(mvm.scale_shape(w.scale.shape[0])) * input_range
    if profile.adc_bits is not None:
        # ADC codes per partial-sum unit, folded into the weights: the product arrives in
        # codes without a pass over the (tiles x batch x out) partial sums.
        half_out = float(1 << (profile.adc_bits - 1))
        codes_per_unit = (half_out * x_unit) / output_range
        w_product = w.product(codes_per_unit, profile, weight_cache)
        sigma = None if std is None else std * codes_per_unit
        if given_magnitude and isinstance(sigma, torch.Tensor):
            sigma = sigma.detach()
        tracking = torch.is_grad_enabled() and (
            x_s.requires_grad or w_product.requires_grad or codes_per_unit.requires_grad
        )
        if not tracking and isinstance(mvm, LinearMVM) and mvm.tiling.n_tiles > 1:
            shape = (mvm.tiling.n_tiles, x_s.shape[0], w_product.shape[0])
            eps = None if sigma is None else source.normal(shape, x_s.dtype)  # type: ignore[union-attr]
            products = mvm.tile_products(x_s, w_product)
            y = adc_sum_of_tiles(products, profile.adc_bits, sigma=sigma, eps=eps)
        else:
            y = mvm.partial(x_s, w_product)
            eps = None if sigma is None else source.normal(y.shape, y.dtype)  # type: ignore[union-attr]
            y = adc_tile_sum(y, profile.adc_bits, mvm.tile_dim, sigma=sigma, eps=eps)
        out_scale = out_scale * (output_range / half_out)
    else:
        y = mvm.partial(x_s, w.product(1.0, profile, weight_cache))  # units of x_unit g v
        if std is not None:
            eps = source.normal(y.shape, y.dtype)  # type: ignore[union-attr]
            y = torch.addcmul(y, std, eps) if isinstance(std, torch.Tensor) else y + std * eps
        y = y.sum(dim=mvm.tile_dim)
        out_scale = out_scale * x_unit
    if bias is not None:
        bias = bias.reshape(mvm.scale_shape(bias.shape[0]))
    return digital_rescale(y, out_scale, bias)


def _cached_product(
    w_mat: torch.Tensor, column: torch.Tensor, cache: dict[str, object] | None
) -> torch.Tensor:
    """``w_mat * column`` (ADC codes per unit, per output row); without autograd, reused
    from ``cache`` while ``w_mat`` is the cached mapped matrix and ``column`` is unchanged."""
    tracking = torch.is_grad_enabled() and (w_mat.requires_grad or column.requires_grad)
    if cache is None or tracking:
        return w_mat * column.reshape(-1, 1)
    entry = cache.get("product")
    if (
        entry is not None
        and entry[0] is w_mat  # type: ignore[index]
        and torch.equal(entry[1], column)  # type: ignore[index]
    ):
        return entry[2]  # type: ignore[index]
    product = w_mat * column.reshape(-1, 1)
    cache["product"] = (w_mat, column.detach().clone(), product)
    return product


def _has_circuit_effects(profile: HardwareProfile) -> bool:
    """True when the stored weights are not just ``Q(W / s)`` (crosstalk, IR drop) or the
    noise needs them in output space (shot noise)."""
    return (
        profile.crosstalk != 0.0
        or profile.wire_resistance_ohm != 0.0
        or profile.shot_noise_coeff != 0.0
    )


def _mapped_weights(
    weight: torch.Tensor,
    tiling: RowTiling,
    profile: HardwareProfile,
    cache: dict[str, object] | None,
    dither: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row scales and effective normalised weights (rounded stochastically given
    ``dither``); without autograd and dither, reused from ``cache`` while the weights are
    equal to those it was computed from (exact comparison, so in-place edits through
    ``.data`` are seen too)."""
    if dither is not None or (torch.is_grad_enabled() and weight.requires_grad):
        cache = None  # a fresh rounding draw, or a graph to keep: nothing to reuse
    key = (profile, tiling, weight.device, weight.dtype, weight.shape)
    if (
        cache is not None and cache.get("key") == key and torch.equal(cache["weight"], weight)  # type: ignore[arg-type]
    ):
        return cache["scale"], cache["w_hat"]  # type: ignore[return-value]
    scale = weight_scale(weight, profile)
    w_hat = circuit_weights(normalized_weights(weight, scale, profile, dither), tiling, profile)
    if cache is not None:
        cache.update(key=key, weight=weight.detach().clone(), scale=scale, w_hat=w_hat)
    return scale, w_hat
