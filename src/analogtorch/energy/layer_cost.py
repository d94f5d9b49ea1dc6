"""Energy, latency and area of one layer's work on the analog chip.

For a weight layer with fan-in ``K`` rows, ``N`` outputs and ``M`` matrix-vector products per
sample, on tiles of ``R_t × C_t`` weight cells, with ``S`` bit slices per weight
(``S = ceil(weight_bits / bits_per_device)`` when a device holds fewer bits, else 1):

* tiles: ``R = row tiles`` (the layer's own tiling, conv tiles hold whole channels),
  ``C = ceil(N·S / C_t)``;
* conversions: DAC ``M·K·C`` (every column tile drives its own rows), ADC ``M·N·S·R`` (every
  row tile digitises its partial sums);
* crossbar: ``E = M · t_read · V_read² · g_max · Σ_j a_j Σ_i ĝ_ij`` with ``ĝ_ij`` the weight
  cell's total conductance in units of g_max (one device of a differential pair is on) and
  ``a_j`` the row activity (see :mod:`.workload`);
* digital: ``M·N·(R·S + 1)`` ops (partial-sum accumulation, affine scaling);
* memory: inputs read and outputs written once through the SRAM activation buffer;
* latency: ``M · max(t_read + adc_share·t_conv, N·(R·S + 1) / digital_ops_per_s)`` (the
  digital periphery is pipelined with the next read);
* area: whole tiles: cells ``R_t·C_t·devices_per_weight·cell_f2·F²``, ``ceil(C_t /
  adc_share)`` ADCs, ``R_t`` DACs and the tile periphery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..hardware.energy_constants import EnergyConstants
from ..hardware.mapping import normalized_weights, weight_codes_per_unit, weight_scale
from ..hardware.profile import HardwareProfile
from ..hardware.tiling import layer_row_tiling
from ..nn.base import AnalogLayerMixin
from .converters import adc_area_m2, adc_energy_j, converter_bits, dac_area_m2, dac_energy_j
from .workload import LayerWorkload, crossbar_weight

ENERGY_PARTS = ("dac", "crossbar", "units", "adc", "digital", "memory", "leakage")
AREA_PARTS = ("cells", "adc", "dac", "periphery", "units")


@dataclass
class LayerCost:
    """Per-sample cost of one module: counts, energy (J) by part, latency (s), area (mm²)."""

    name: str
    kind: str
    calls: float
    macs: float
    mvms: float = 0.0
    tiles: int = 0
    utilization: float = 0.0
    dac_conversions: float = 0.0
    adc_conversions: float = 0.0
    digital_ops: float = 0.0
    energy_j: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ENERGY_PARTS, 0.0))
    latency_s: float = 0.0
    area_mm2: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AREA_PARTS, 0.0))
    baselines_j: dict[str, float] = field(default_factory=dict)
    baselines_s: dict[str, float] = field(default_factory=dict)

    @property
    def total_energy_j(self) -> float:
        return sum(self.energy_j.values())

    @property
    def total_area_mm2(self) -> float:
        return sum(self.area_mm2.values())


def weight_slices(profile: HardwareProfile) -> int:
    """Devices (columns) per weight magnitude: ``ceil(weight_bits / bits_per_device)``."""
    bits_per_device = profile.energy.bits_per_device
    if bits_per_device is None or profile.weight_bits is None:
        return 1
    # one bit of a signed weight is its sign, carried by the differential pair
    return max(math.ceil((profile.weight_bits - 1) / bits_per_device), 1)


def cell_conductance(
    weight: torch.Tensor, profile: HardwareProfile, *, differentiable: bool = False
) -> torch.Tensor:
    """``ĝ`` (out, rows): total conductance of each weight cell in units of g_max.

    Unsliced: ``|ŵ| · d/2`` (quantised when ``weight_bits`` is set) for ``d =
    devices_per_weight``: one polarity's ``d/2`` devices in parallel carry the weight (one
    device when ``d = 1``). Bit-sliced: the code magnitude ``m = |ŵ|/Δ`` is written in base
    ``L = 2^bits_per_device`` over the slices, each device at ``digit/(L−1)`` of g_max.
    ``differentiable=True`` keeps the graph to ``weight`` (straight-through through the
    quantiser; unsliced weights only), for energy regularisers.
    """
    slices = weight_slices(profile)
    if differentiable and slices != 1:
        raise ValueError(
            f"a bit-sliced weight ({slices} slices) has no differentiable conductance; "
            "use bits_per_device >= weight_bits for an energy regulariser"
        )
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        source = weight if differentiable else weight.detach()
        flat = source.reshape(weight.shape[0], -1).float()
        w_hat = normalized_weights(flat, weight_scale(flat, profile), profile).abs()
        if slices == 1:
            return w_hat * max(profile.energy.devices_per_weight / 2, 1.0)
        levels = 2**profile.energy.bits_per_device
        code = torch.round(w_hat * weight_codes_per_unit(profile)).long()
        g = torch.zeros_like(w_hat)
        for s in range(slices):  # at most 15 slices; each a vectorised pass
            g += torch.div(code, levels**s, rounding_mode="floor").remainder(levels) / (levels - 1)
        return g


def analog_layer_cost(work: LayerWorkload, profile: HardwareProfile) -> LayerCost:
    """Cost of a weight layer mapped onto crossbar tiles of ``profile``."""
    c: EnergyConstants = profile.energy
    module = work.module
    weight = crossbar_weight(module).detach()
    tiling = (
        module.row_tiling(profile)
        if isinstance(module, AnalogLayerMixin)
        else layer_row_tiling(weight.shape, profile.tile_rows)
    )
    slices = weight_slices(profile)
    row_tiles = tiling.n_tiles
    col_tiles = math.ceil(work.cols * slices / profile.tile_cols)
    dac_bits = converter_bits(profile.dac_bits, c)
    adc_bits = converter_bits(profile.adc_bits, c)
    cost = LayerCost(work.name, "analog", work.calls, work.macs, mvms=work.mvms)
    cost.tiles = row_tiles * col_tiles
    cost.utilization = work.weights * slices / (cost.tiles * profile.tile_rows * profile.tile_cols)
    cost.dac_conversions = work.mvms * work.rows * col_tiles
    cost.adc_conversions = work.mvms * work.cols * slices * row_tiles
    ops_per_mvm = work.cols * (row_tiles * slices + 1)
    cost.digital_ops = work.mvms * ops_per_mvm

    pwm = c.input_encoding == "pwm"
    activity = work.row_activity_abs if pwm else work.row_activity_sq
    g_cells = cell_conductance(weight, profile)
    if activity is None:
        activity_weighted = c.input_activity * float(g_cells.sum())
    else:
        activity_weighted = float(g_cells.sum(0) @ activity.to(g_cells))
    joule_per_unit = profile.t_read_seconds * profile.v_read_volts**2 * profile.g_max_siemens
    cost.energy_j["crossbar"] = work.mvms * joule_per_unit * activity_weighted
    cost.energy_j["dac"] = cost.dac_conversions * dac_energy_j(dac_bits, c)
    cost.energy_j["adc"] = cost.adc_conversions * adc_energy_j(adc_bits, c)
    cost.energy_j["digital"] = cost.digital_ops * c.digital_op_j
    cost.energy_j["memory"] = (
        (work.elements_in * dac_bits + work.elements_out * adc_bits) / 8 * c.sram_j_per_byte
    )
    t_analog = profile.t_read_seconds + c.adc_share * c.adc_conversion_s
    cost.latency_s = work.mvms * max(t_analog, ops_per_mvm / c.digital_ops_per_s)

    cells_m2 = profile.tile_rows * profile.tile_cols * c.devices_per_weight * c.cell_area_f2
    cells_m2 *= c.feature_size_m**2
    adcs_per_tile = math.ceil(profile.tile_cols / c.adc_share)
    mm2 = 1e6 * cost.tiles
    cost.area_mm2["cells"] = mm2 * cells_m2
    cost.area_mm2["adc"] = mm2 * adcs_per_tile * adc_area_m2(adc_bits, c)
    cost.area_mm2["dac"] = mm2 * profile.tile_rows * dac_area_m2(dac_bits, c)
    cost.area_mm2["periphery"] = mm2 * c.tile_periphery_area_m2
    return cost


def digital_layer_cost(work: LayerWorkload, profile: HardwareProfile) -> LayerCost:
    """Cost of a weight layer kept digital on the chip's digital unit (8-bit operands)."""
    c = profile.energy
    cost = LayerCost(work.name, "digital", work.calls, work.macs, mvms=work.mvms)
    cost.digital_ops = work.macs
    cost.energy_j["digital"] = work.macs * c.digital_mac_j
    cost.energy_j["memory"] = (
        work.weights * work.calls + work.elements_in + work.elements_out
    ) * c.sram_j_per_byte
    cost.latency_s = work.macs / c.digital_ops_per_s
    return cost


def attention_cost(work: LayerWorkload, profile: HardwareProfile) -> LayerCost:
    """Cost of attention's activation x activation products (``Q K^T``, ``A V``: 8-bit MACs)
    and softmax (elementwise ops) on the digital unit; no weights, no crossbar."""
    c = profile.energy
    cost = LayerCost(work.name, "attention", work.calls, work.macs)
    cost.digital_ops = work.macs + work.ops
    cost.energy_j["digital"] = work.macs * c.digital_mac_j + work.ops * c.digital_op_j
    cost.latency_s = cost.digital_ops / c.digital_ops_per_s
    return cost


def elementwise_cost(work: LayerWorkload, profile: HardwareProfile) -> LayerCost:
    """Cost of activations, normalisation and pooling on the digital periphery."""
    c = profile.energy
    cost = LayerCost(work.name, "elementwise", work.calls, 0.0)
    cost.digital_ops = work.ops
    cost.energy_j["digital"] = work.ops * c.digital_op_j
    cost.latency_s = work.ops / c.digital_ops_per_s
    return cost
