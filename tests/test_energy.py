"""`analogtorch.energy`: converter laws, tiling counts, crossbar read energy and the report.

Every expected value is written out by hand from the equations in the module docstrings
(``energy/converters.py``, ``energy/layer_cost.py``, ``energy/baselines.py``,
``energy/dynamics.py``), with profiles whose constants are round numbers; nothing expected
is computed by calling the code under test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from rich.console import Console
from torch import nn

import analogtorch as at
from analogtorch.energy import (
    DigitalBaseline,
    adc_area_m2,
    adc_energy_j,
    baseline_names,
    dac_area_m2,
    dac_energy_j,
    estimate,
    estimate_dynamics,
)
from analogtorch.hardware.energy_constants import EnergyConstants
from analogtorch.models import TiedFixedPointNet

REL = 1e-12  # products of a handful of floats: agreement to rounding

# Round-number read physics: t_read·V²·g_max = 1e-7 s · 0.25 V² · 1e-5 S = 2.5e-13 J.
T_READ = 1e-7
V_READ = 0.5
G_MAX = 1e-5
JOULE_PER_UNIT = T_READ * V_READ**2 * G_MAX


def round_profile(**changes) -> at.HardwareProfile:
    """An ideal profile with round read constants, amplitude-coded inputs, activity 1/4."""
    energy = {"input_encoding": "amplitude", "input_activity": 0.25, "leakage_w_per_mm2": 0.0}
    energy.update(changes.pop("energy", {}))
    base = {
        "t_read_seconds": T_READ,
        "v_read_volts": V_READ,
        "g_max_siemens": G_MAX,
        "tile_rows": 256,
        "tile_cols": 256,
        **changes,
    }
    return at.HardwareProfile(**base).replace(energy=energy)


def linear_with_weights(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def random_signs(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


def layer_named(report, name: str):
    (layer,) = [layer for layer in report.layers if layer.name == name]
    return layer


# -- 1. converter scaling laws ------------------------------------------------------------


@pytest.mark.parametrize("bits", range(4, 11))
def test_walden_adc_energy_doubles_per_bit(bits):
    c = EnergyConstants(adc_fom_model="walden")
    assert adc_energy_j(bits + 1, c) / adc_energy_j(bits, c) == 2.0


def test_walden_adc_energy_is_fom_times_two_to_the_enob():
    c = EnergyConstants(adc_fom_model="walden", adc_walden_fom_j=50e-15, adc_enob_loss=0.5)
    # 8 bits, ENOB 7.5: 50 fJ · 2^7.5 = 50 fJ · 181.0193... = 9.0510 pJ
    assert adc_energy_j(8, c) == pytest.approx(50e-15 * 2**7.5, rel=REL)
    assert adc_energy_j(8, c) == pytest.approx(9.0510e-12, rel=1e-4)


@pytest.mark.parametrize("bits", range(4, 11))
def test_schreier_adc_energy_quadruples_per_bit(bits):
    c = EnergyConstants(adc_fom_model="schreier")
    ratio = adc_energy_j(bits + 1, c) / adc_energy_j(bits, c)
    assert ratio == pytest.approx(10 ** (6.02 / 10), rel=REL)


def test_schreier_adc_energy_matches_closed_form():
    c = EnergyConstants(adc_fom_model="schreier", adc_schreier_fom_db=170.0, adc_enob_loss=0.5)
    # 10 bits, ENOB 9.5: SNDR = 6.02·9.5 + 1.76 = 58.95 dB; E = 10^((58.95 − 170)/10) / 2
    assert adc_energy_j(10, c) == pytest.approx(10 ** ((58.95 - 170.0) / 10) / 2, rel=1e-12)
    assert adc_energy_j(10, c) == pytest.approx(3.926e-12, rel=1e-3)


def test_envelope_adc_energy_is_the_larger_of_walden_and_schreier():
    c = EnergyConstants(
        adc_fom_model="envelope",
        adc_walden_fom_j=50e-15,
        adc_schreier_fom_db=175.0,
        adc_enob_loss=0.5,
    )
    # 4 bits (ENOB 3.5): Walden 50 fJ·2^3.5 = 0.566 pJ >> Schreier 10^((22.83−175)/10)/2.
    walden_4 = 50e-15 * 2**3.5
    schreier_4 = 10 ** ((6.02 * 3.5 + 1.76 - 175.0) / 10) / 2
    assert walden_4 > 1000 * schreier_4
    assert adc_energy_j(4, c) == pytest.approx(walden_4, rel=REL)
    # 16 bits (ENOB 15.5): Schreier 10^((95.07−175)/10)/2 = 5.08 nJ > Walden 2.32 nJ.
    walden_16 = 50e-15 * 2**15.5
    schreier_16 = 10 ** ((6.02 * 15.5 + 1.76 - 175.0) / 10) / 2
    assert schreier_16 > 2 * walden_16
    assert adc_energy_j(16, c) == pytest.approx(schreier_16, rel=REL)


@pytest.mark.parametrize("bits", range(1, 12))
def test_dac_energy_and_converter_areas_double_per_bit(bits):
    c = EnergyConstants(
        dac_energy_per_level_j=1e-15, adc_area_per_level_m2=2e-12, dac_area_per_level_m2=3e-13
    )
    assert dac_energy_j(bits, c) == pytest.approx(1e-15 * 2**bits, rel=REL)
    assert adc_area_m2(bits, c) == pytest.approx(2e-12 * 2**bits, rel=REL)
    assert dac_area_m2(bits, c) == pytest.approx(3e-13 * 2**bits, rel=REL)
    assert dac_energy_j(bits + 1, c) / dac_energy_j(bits, c) == 2.0
    assert adc_area_m2(bits + 1, c) / adc_area_m2(bits, c) == 2.0
    assert dac_area_m2(bits + 1, c) / dac_area_m2(bits, c) == 2.0


# -- 2. tiling counts ---------------------------------------------------------------------


@pytest.mark.parametrize("converted", [False, True], ids=["digital-model", "converted"])
def test_linear_1000x300_on_256_tiles_uses_4_row_by_2_column_tiles(converted):
    model = nn.Linear(1000, 300)
    if converted:
        model = at.convert(model, round_profile())
    report = estimate(model, round_profile(), (1000,))
    assert report.layers[0].kind == "analog"
    layer = report.layers[0]
    assert layer.tiles == 4 * 2  # ceil(1000/256) row tiles × ceil(300/256) column tiles
    assert layer.mvms == 1
    assert layer.adc_conversions == 300 * 4  # every row tile digitises all 300 outputs
    assert layer.dac_conversions == 1000 * 2  # every column tile drives all 1000 rows
    assert layer.utilization == pytest.approx(1000 * 300 / (8 * 256 * 256), rel=REL)


def test_linear_257x513_on_256_tiles_uses_2_balanced_row_tiles_and_3_column_tiles():
    report = estimate(nn.Linear(257, 513), round_profile(), (257,))
    layer = report.layers[0]
    assert layer.tiles == 2 * 3
    assert layer.adc_conversions == 513 * 2
    assert layer.dac_conversions == 257 * 3


def test_conv_tiles_hold_whole_input_channels():
    # 30 channels × 3×3 taps; 64 rows hold floor(64/9) = 7 whole channels -> ceil(30/7) = 5.
    profile = round_profile(tile_rows=64, tile_cols=64)
    report = estimate(nn.Conv2d(30, 7, 3), profile, (30, 10, 12))
    layer = report.layers[0]
    positions = (10 - 2) * (12 - 2)
    assert layer.mvms == positions
    assert layer.tiles == 5 * 1
    assert layer.adc_conversions == positions * 7 * 5
    assert layer.dac_conversions == positions * 30 * 9 * 1
    assert layer.macs == positions * 270 * 7


# -- 3. crossbar energy -------------------------------------------------------------------


def test_crossbar_energy_counts_active_devices_at_default_activity():
    # Equal magnitudes: per-row max scaling puts every nonzero cell at ĝ = 1.
    weight = 0.3 * random_signs((4, 8))
    report = estimate(linear_with_weights(weight), round_profile(), (8,))
    # E = M · t_read · V² · g_max · activity · n_nonzero = 1 · 2.5e-13 J · 0.25 · 32 = 2 pJ
    assert report.layers[0].energy_j["crossbar"] == pytest.approx(2e-12, rel=REL)
    assert report.layers[0].energy_j["crossbar"] == pytest.approx(
        1 * JOULE_PER_UNIT * 0.25 * 32, rel=REL
    )


def test_zeroing_half_the_weights_halves_the_crossbar_energy():
    weight = 0.3 * random_signs((4, 8))
    sparse = weight.clone()
    sparse[:, ::2] = 0.0  # every row keeps 4 nonzero cells, so its max is unchanged
    full = estimate(linear_with_weights(weight), round_profile(), (8,))
    half = estimate(linear_with_weights(sparse), round_profile(), (8,))
    ratio = half.layers[0].energy_j["crossbar"] / full.layers[0].energy_j["crossbar"]
    assert ratio == pytest.approx(0.5, rel=REL)


def test_doubling_the_read_voltage_quadruples_the_crossbar_energy():
    model = linear_with_weights(0.3 * random_signs((4, 8)))
    low = estimate(model, round_profile(), (8,))
    high = estimate(model, round_profile(v_read_volts=2 * V_READ), (8,))
    ratio = high.layers[0].energy_j["crossbar"] / low.layers[0].energy_j["crossbar"]
    assert ratio == pytest.approx(4.0, rel=REL)


# Batch of 4 samples, 8 features; the DAC full scale is max|x| = 1.
# Features 0-3 take  1, -1,   0,   0: E[x²] = 1/2, E|x| = 1/2.
# Features 4-7 take .5, -.5, .5, -.5: E[x²] = 1/4, E|x| = 1/2.
MEASURED_INPUTS = torch.tensor(
    [
        [1.0] * 4 + [0.5] * 4,
        [-1.0] * 4 + [-0.5] * 4,
        [0.0] * 4 + [0.5] * 4,
        [0.0] * 4 + [-0.5] * 4,
    ]
)


@pytest.mark.parametrize(
    ("encoding", "activity_sum"),
    [
        # Every input row j feeds 4 cells of ĝ = 1: Σ_j a_j Σ_i ĝ_ij = 4 · Σ_j a_j.
        ("amplitude", 4 * (4 * 0.5 + 4 * 0.25)),  # E[(x/r)²]: 12
        ("pwm", 4 * (4 * 0.5 + 4 * 0.5)),  # E[|x/r|]: 16
    ],
)
def test_crossbar_energy_uses_measured_row_activity_of_the_encoding(encoding, activity_sum):
    model = linear_with_weights(0.3 * random_signs((4, 8), seed=1))
    profile = round_profile(energy={"input_encoding": encoding})
    report = estimate(model, profile, inputs=MEASURED_INPUTS)
    layer = report.layers[0]
    assert layer.mvms == 1  # per sample
    assert layer.energy_j["crossbar"] == pytest.approx(JOULE_PER_UNIT * activity_sum, rel=1e-6)


# -- 4. bit slicing -----------------------------------------------------------------------


def test_bit_slicing_doubles_adc_conversions_and_column_tiles():
    # weight_bits = 5 (1 sign bit + 4 magnitude bits), 2 bits per device: ceil(4/2) = 2 slices.
    model = linear_with_weights(0.3 * random_signs((200, 64)))
    unsliced = estimate(model, round_profile(weight_bits=5), (64,)).layers[0]
    sliced = estimate(
        model, round_profile(weight_bits=5, energy={"bits_per_device": 2}), (64,)
    ).layers[0]
    assert unsliced.tiles == 1 and sliced.tiles == 2  # 200 vs 400 columns on 256-wide tiles
    assert unsliced.adc_conversions == 200
    assert sliced.adc_conversions == 2 * 200
    assert sliced.dac_conversions == 2 * unsliced.dac_conversions == 2 * 64
    # Full-scale code 15 = 33 in base 4: both slices at 3/3 of g_max, ĝ = 2 per cell.
    ratio = sliced.energy_j["crossbar"] / unsliced.energy_j["crossbar"]
    assert ratio == pytest.approx(2.0, rel=1e-6)


# -- 5. repeated calls (equilibrium cores) --------------------------------------------------


class RepeatedLinear(nn.Module):
    """Applies one ``nn.Linear`` ``k`` times (a weight-tied core unrolled)."""

    def __init__(self, width: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.core = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.k):
            x = self.core(x)
        return x


def test_a_layer_called_k_times_is_costed_k_times():
    torch.manual_seed(0)
    once = RepeatedLinear(16, 1)
    thrice = RepeatedLinear(16, 3)
    thrice.load_state_dict(once.state_dict())
    profile = round_profile()
    single = layer_named(estimate(once, profile, (16,)), "core")
    repeated = layer_named(estimate(thrice, profile, (16,)), "core")
    assert repeated.calls == 3
    assert repeated.mvms == 3
    assert repeated.total_energy_j == pytest.approx(3 * single.total_energy_j, rel=1e-9)
    for part, joules in single.energy_j.items():
        assert repeated.energy_j[part] == pytest.approx(3 * joules, rel=1e-9), part


def test_tied_fixed_point_core_is_costed_once_per_solver_iteration():
    model = TiedFixedPointNet(12, width=16, num_classes=3, tol=1e-4, max_iter=200, seed=0)
    x = torch.randn(1, 12, generator=torch.Generator().manual_seed(0))
    report = estimate(model, round_profile(), inputs=x)
    with torch.no_grad():
        model.eval()(x)  # the same solve on the caller's model (estimate traces a copy)
    assert model.last_iterations > 1
    assert layer_named(report, "core").calls == model.last_iterations
    assert layer_named(report, "core").mvms == model.last_iterations
    assert layer_named(report, "inject").calls == 1
    assert layer_named(report, "head").calls == 1


# -- 6. digital baselines -----------------------------------------------------------------


def test_shipped_baselines_load():
    assert {"asic-int8", "gpu-a100"} <= set(baseline_names())
    for name in ("asic-int8", "gpu-a100"):
        baseline = DigitalBaseline.preset(name)
        assert baseline.name == name
        assert baseline.mac_j > 0 and baseline.macs_per_s > 0


def test_fixed_cost_baseline_energy_of_one_linear_layer_matches_the_formula():
    # Round constants, no weight-memory sizing: weight bytes cost weight_j_per_byte flat.
    flat = DigitalBaseline(
        name="flat",
        mac_j=1e-12,
        weight_j_per_byte=10e-12,
        activation_j_per_byte=2e-12,
        op_j=0.5e-12,
        weight_bits=16,
        activation_bits=8,
        macs_per_s=1e9,
        layer_overhead_s=1e-6,
    )
    report = estimate(nn.Linear(64, 32), round_profile(), (64,), baselines=[flat])
    # E = M·mac_j + n_w·(16/8)·weight_j_per_byte + (n_in + n_out)·(8/8)·activation_j_per_byte
    energy_j = 2048 * 1e-12 + 2048 * 2 * 10e-12 + (64 + 32) * 1 * 2e-12
    assert report.baseline_energy_j("flat") == pytest.approx(energy_j, rel=REL)
    # t = M / macs_per_s + calls · layer_overhead_s
    assert report.baseline_latency_s("flat") == pytest.approx(2048 / 1e9 + 1e-6, rel=REL)
    assert report.ratio("flat") == pytest.approx(energy_j / report.energy_j, rel=REL)


@pytest.mark.parametrize(
    ("n_in", "n_out", "memory_bytes"),
    [
        (64, 32, 8 * 1024),  # 2 KB of int8 weights: the 8 KB floor
        (1024, 512, 512 * 1024),  # 512 KB of int8 weights
    ],
)
def test_asic_baseline_energy_of_one_linear_layer_matches_the_formula(n_in, n_out, memory_bytes):
    asic = DigitalBaseline.preset("asic-int8")
    assert (asic.weight_bits, asic.activation_bits) == (8, 8)
    assert asic.weight_memory_ref_bytes == 1024 * 1024
    report = estimate(nn.Linear(n_in, n_out), round_profile(), (n_in,), baselines=["asic-int8"])
    macs = weights = n_in * n_out
    # weight fetch J/B = weight_j_per_byte · sqrt(max(model bytes, 8 KB) / 1 MB)
    fetch_j_per_byte = asic.weight_j_per_byte * math.sqrt(memory_bytes / (1024 * 1024))
    energy_j = (
        macs * asic.mac_j
        + weights * 1 * fetch_j_per_byte
        + (n_in + n_out) * 1 * asic.activation_j_per_byte
    )
    assert report.baseline_energy_j("asic-int8") == pytest.approx(energy_j, rel=REL)
    assert report.baseline_latency_s("asic-int8") == pytest.approx(macs / asic.macs_per_s, rel=REL)
    assert report.ratio("asic-int8") == pytest.approx(energy_j / report.energy_j, rel=REL)


def test_gpu_baseline_fetches_every_weight_from_hbm_at_a_fixed_cost():
    gpu = DigitalBaseline.preset("gpu-a100")
    assert gpu.weight_memory_ref_bytes is None
    report = estimate(nn.Linear(64, 32), round_profile(), (64,), baselines=["gpu-a100"])
    bytes_per_value = gpu.weight_bits / 8
    energy_j = (
        2048 * gpu.mac_j
        + 2048 * bytes_per_value * gpu.weight_j_per_byte
        + 96 * gpu.activation_bits / 8 * gpu.activation_j_per_byte
    )
    assert report.baseline_energy_j("gpu-a100") == pytest.approx(energy_j, rel=REL)
    assert report.baseline_latency_s("gpu-a100") == pytest.approx(
        2048 / gpu.macs_per_s + gpu.layer_overhead_s, rel=REL
    )


def test_unknown_baseline_name_raises_listing_the_available_ones():
    with pytest.raises(ValueError, match=r"nope.*asic-int8.*gpu-a100"):
        DigitalBaseline.preset("nope")
    with pytest.raises(ValueError, match="asic-int8"):
        estimate(nn.Linear(4, 4), round_profile(), (4,), baselines=["nope"])


# -- 7. converted models ------------------------------------------------------------------


def small_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))


def test_skipped_layers_of_a_converted_model_are_costed_digital():
    profile = round_profile(name="round")
    converted = at.convert(small_mlp(), profile, skip=["2"])
    report = estimate(converted, profile, (16,))
    kinds = {layer.name: layer.kind for layer in report.layers}
    assert kinds == {"0": "analog", "1": "elementwise", "2": "digital"}
    digital = layer_named(report, "2")
    assert digital.energy_j["digital"] == pytest.approx(32 * 10 * 0.25e-12, rel=REL)


def test_profile_defaults_to_the_analog_layers_profile():
    profile = round_profile(name="round")
    converted = at.convert(small_mlp(), profile, skip=["2"])
    implicit = estimate(converted, None, (16,))
    explicit = estimate(converted, profile, (16,))
    assert implicit.profile == "round"
    assert implicit.energy_j == pytest.approx(explicit.energy_j, rel=REL)


def test_digital_model_without_profile_raises():
    with pytest.raises(ValueError, match="profile="):
        estimate(small_mlp(), None, (16,))


def test_unsupported_weight_module_raises_naming_it():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="Embedding"):
        estimate(model, round_profile(), (4,))


# -- 8. leakage ---------------------------------------------------------------------------


def test_leakage_energy_is_leakage_power_density_times_area_times_latency():
    leakage_w_per_mm2 = 1e-3
    profile = round_profile(
        tile_rows=128,
        tile_cols=64,
        adc_bits=4,
        dac_bits=4,
        energy={
            "leakage_w_per_mm2": leakage_w_per_mm2,
            "devices_per_weight": 2,
            "cell_area_f2": 50.0,
            "feature_size_m": 10e-9,
            "adc_area_per_level_m2": 1e-12,
            "dac_area_per_level_m2": 1e-13,
            "tile_periphery_area_m2": 0.0,
            "adc_share": 1,
            "adc_conversion_s": 1e-8,
            "digital_ops_per_s": 1e10,
        },
    )
    model = nn.Sequential(nn.Linear(100, 50), nn.ReLU())
    report = estimate(model, profile, (100,))
    # One 128×64 tile: cells 128·64·2·50·(10 nm)² = 8.192e-11 m²; 64 ADCs of 16 pm² ·1e0
    # = 1.024e-9 m²; 128 DACs of 1.6e-12 m² = 2.048e-10 m².
    area_mm2 = 1e6 * (128 * 64 * 2 * 50 * 1e-16 + 64 * 16e-12 + 128 * 1.6e-12)
    # Linear: max(t_read + t_conv, 50·(1 + 1) ops / 1e10) = 1.1e-7 s; ReLU: 50 ops / 1e10.
    latency_s = max(1e-7 + 1e-8, 100 / 1e10) + 50 / 1e10
    assert report.area_mm2 == pytest.approx(area_mm2, rel=REL)
    assert report.latency_s == pytest.approx(latency_s, rel=REL)
    leakage_j = report.energy_by_part_j["leakage"]
    assert leakage_j == pytest.approx(leakage_w_per_mm2 * area_mm2 * latency_s, rel=REL)


# -- 9. report output ---------------------------------------------------------------------


@pytest.fixture
def mlp_report():
    profile = round_profile(name="round")
    return estimate(at.convert(small_mlp(), profile, skip=["2"]), profile, (16,))


def test_report_json_round_trips_with_totals_equal_to_the_sum_of_layers(mlp_report, tmp_path):
    path = tmp_path / "report.json"
    text = mlp_report.to_json(path)
    assert path.read_text() == text
    data = json.loads(text)
    assert data == json.loads(json.dumps(mlp_report.to_dict()))
    layers = data["layers"]
    assert data["total"]["energy_j"] == pytest.approx(
        sum(sum(layer["energy_j"].values()) for layer in layers), rel=REL
    )
    assert data["total"]["macs"] == sum(layer["macs"] for layer in layers) == 16 * 32 + 32 * 10
    for part, joules in data["total"]["energy_by_part_j"].items():
        assert joules == pytest.approx(sum(layer["energy_j"][part] for layer in layers), rel=REL)
    assert data["total"]["area_mm2"] == pytest.approx(
        sum(sum(layer["area_mm2"].values()) for layer in layers), rel=REL
    )
    assert data["total"]["latency_s"] == pytest.approx(
        sum(layer["latency_s"] for layer in layers), rel=REL
    )
    assert set(data["baselines"]) == {"gpu-a100", "asic-int8"}


def test_report_table_renders_a_total_row(mlp_report):
    console = Console(record=True, width=200)
    console.print(mlp_report.table())
    text = console.export_text()
    assert "total" in text
    assert "asic-int8" in text


def test_report_plot_writes_a_png(mlp_report, tmp_path):
    path = mlp_report.plot(tmp_path / "x.png")
    assert path == tmp_path / "x.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000


# -- 10. continuous-time dynamics ---------------------------------------------------------


def dynamics_profile() -> at.HardwareProfile:
    return round_profile(
        adc_bits=6,
        energy={
            "adc_fom_model": "walden",
            "adc_walden_fom_j": 1e-14,
            "adc_enob_loss": 0.0,
            "unit_power_w": 1e-6,
            "devices_per_weight": 2,
            "cell_area_f2": 50.0,
            "feature_size_m": 10e-9,
        },
    )


def coupling_matrix() -> torch.Tensor:
    """6×6 ±1 couplings, zero diagonal and one more zero per row: 24 present."""
    j = random_signs((6, 6), seed=3)
    j.fill_diagonal_(0.0)
    for i in range(6):
        j[i, (i + 1) % 6] = 0.0
    return j


def test_dynamics_energy_is_power_times_duration_plus_readout():
    couplings = coupling_matrix()
    assert int((couplings != 0).sum()) == 24
    duration_s = 1e-6
    report = estimate_dynamics(couplings, dynamics_profile(), duration_s, activity=0.5)
    # P = V²·g_max·a·Σĝ + n_units·P_unit = 0.25·1e-5·0.5·24 + 6·1e-6 = 3e-5 + 6e-6 W
    power_w = 0.25 * 1e-5 * 0.5 * 24 + 6 * 1e-6
    # 6 read-outs at 6 bits, ENOB 6: 1e-14 · 2^6 = 6.4e-13 J each
    energy_j = power_w * duration_s + 6 * 1e-14 * 2**6
    assert report.energy_j == pytest.approx(energy_j, rel=REL)
    assert report.energy_j == pytest.approx(3.6e-11 + 3.84e-12, rel=REL)
    assert report.layers[0].adc_conversions == 6


def test_dynamics_cell_area_scales_with_present_couplings():
    couplings = coupling_matrix()
    sparser = couplings.clone()
    sparser[:, ::2] = 0.0
    present = int((sparser != 0).sum())
    full = estimate_dynamics(couplings, dynamics_profile(), 1e-6)
    half = estimate_dynamics(sparser, dynamics_profile(), 1e-6)
    # cells: couplings · devices_per_weight · cell_f2 · F² = n · 2 · 50 · 1e-16 m²
    assert full.area_by_part_mm2["cells"] == pytest.approx(1e6 * 24 * 2 * 50 * 1e-16, rel=REL)
    assert half.area_by_part_mm2["cells"] == pytest.approx(1e6 * present * 1e-14, rel=REL)


def test_dynamics_asic_baseline_sizes_the_weight_memory_to_the_couplings():
    # 1024×1024 dense int8 couplings = 1 MB = the asic reference capacity: fetch J/B = 12.5 pJ.
    couplings = random_signs((1024, 1024), seed=4)
    asic = DigitalBaseline.preset("asic-int8")
    assert asic.weight_memory_ref_bytes == 1024 * 1024
    report = estimate_dynamics(couplings, dynamics_profile(), 1e-6, baselines=("asic-int8",))
    present = 1024 * 1024
    # one digital step: M = present MACs, present weights, 2·n_units activations
    energy_j = (
        present * asic.mac_j
        + present * 1 * asic.weight_j_per_byte
        + 2 * 1024 * 1 * asic.activation_j_per_byte
    )
    assert report.baseline_energy_j("asic-int8") == pytest.approx(energy_j, rel=REL)


@pytest.mark.parametrize("duration_s", [0.0, -1e-6, math.nan, math.inf])
def test_dynamics_rejects_a_non_positive_or_non_finite_duration(duration_s):
    with pytest.raises(ValueError, match="duration_s"):
        estimate_dynamics(coupling_matrix(), dynamics_profile(), duration_s)


# -- 11. profile validation of the energy constants ---------------------------------------


def test_invalid_energy_constant_names_the_nested_field():
    with pytest.raises(at.ProfileError, match=r"energy\.adc_share"):
        at.HardwareProfile.preset("pcm").replace(energy={"adc_share": 0})


def test_unknown_energy_constant_is_named_in_the_error():
    with pytest.raises(at.ProfileError, match="adc_sharing"):
        at.HardwareProfile.preset("pcm").replace(energy={"adc_sharing": 2})
    with pytest.raises(at.ProfileError, match="adc_sharing"):
        EnergyConstants().replace(adc_sharing=2)


def test_energy_constants_survive_a_yaml_round_trip(tmp_path):
    profile = at.HardwareProfile.preset("pcm").replace(
        energy={"adc_share": 8, "leakage_w_per_mm2": 0.01, "bits_per_device": 3}
    )
    path = tmp_path / "p.yaml"
    profile.to_yaml(path)
    loaded = at.HardwareProfile.from_yaml(path)
    assert loaded == profile
    assert loaded.energy == profile.energy
    assert (loaded.energy.adc_share, loaded.energy.bits_per_device) == (8, 3)


def test_estimate_leaves_the_callers_analog_ranges_uninitialised():
    profile = at.HardwareProfile.preset("pcm")
    amodel = at.convert(nn.Sequential(nn.Linear(8, 4)), profile)
    estimate(amodel, input_shape=(8,))
    assert not bool(amodel[0].input_range_initialized)
    assert float(amodel[0].input_range) == 1.0
