"""Noise schedules and the hardware curriculum (`analogtorch.train.schedules`).

Schedules must hit both end points exactly (``σ_0 = start``, ``σ_T = end``, bit for bit),
hold ``end`` after ``T``, interpolate as documented, and reject bad input with a
``ValueError``/``TypeError`` that names the parameter. The curriculum must switch stages at
the given epochs and build each stage's profile from the base profile.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.linear import AnalogLinear
from analogtorch.train import (
    Constant,
    Curriculum,
    Exponential,
    Linear,
    Stage,
    Step,
    apply_profile,
    default_stages,
    make_schedule,
)

# A base with every kind of non-ideality the curriculum switches.
BASE = HardwareProfile.preset("pcm").replace(
    weight_bits=4,
    weight_range=1.5,
    prog_noise_std=0.02,
    shot_noise_coeff=0.01,
    mismatch_std=0.1,
    crosstalk=0.01,
    wire_resistance_ohm=1.0,
    transfer_curve="tanh",
    transfer_nonlinearity=0.5,
    tile_rows=64,
)


# -- schedules ---------------------------------------------------------------------------


def test_constant_is_the_same_at_every_step():
    assert [Constant(0.3)(s) for s in (0, 1, 10**9)] == [0.3, 0.3, 0.3]


@pytest.mark.parametrize(("start", "end", "total"), [(0.1, 0.3, 7), (1.0, 0.0, 3), (0, 1, 1)])
def test_linear_hits_both_end_points_exactly_and_holds_the_end(start, end, total):
    s = Linear(start, end, total)
    assert s(0) == start
    assert s(total) == end
    assert s(total + 1) == s(10 * total) == end


def test_linear_interpolates_proportionally_to_the_step():
    # σ_t = 0.1 + (0.3 - 0.1) · 3/10 = 0.16;  σ_5 of 0 -> 1 over 10 = 0.5
    assert Linear(0.1, 0.3, 10)(3) == pytest.approx(0.16, abs=1e-15)
    assert Linear(0.0, 1.0, 10)(5) == 0.5


def test_exponential_hits_both_end_points_and_its_midpoint_is_the_geometric_mean():
    s = Exponential(1e-3, 1e-1, 10)
    assert s(0) == 1e-3
    assert s(10) == 1e-1
    assert s(50) == 1e-1
    assert s(5) == pytest.approx(math.sqrt(1e-3 * 1e-1), rel=1e-12)  # = 1e-2
    # decreasing: 8 -> 2 over 2 steps, σ_1 = 8 (1/4)^(1/2) = 4
    assert Exponential(8.0, 2.0, 2)(1) == pytest.approx(4.0, rel=1e-15)


def test_step_is_piecewise_constant_with_half_open_intervals():
    s = Step((1.0, 0.5, 0.1), (10, 20))
    assert [s(t) for t in (0, 9, 10, 19, 20, 1000)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    assert Step((0.7,))(123) == 0.7


def test_schedules_are_frozen_and_comparable():
    s = Linear(0.0, 1.0, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.end = 2.0  # type: ignore[misc]
    assert s == Linear(0, 1, 5)
    assert Step([1, 2], [3]) == Step((1.0, 2.0), (3,))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Linear(0.0, 1.0, 0),
        lambda: Linear(0.0, 1.0, 2.5),
        lambda: Linear(float("nan"), 1.0, 2),
        lambda: Exponential(0.0, 1.0, 2),
        lambda: Exponential(1.0, -1.0, 2),
        lambda: Exponential(1.0, float("inf"), 2),
        lambda: Step((1.0, 2.0), ()),
        lambda: Step((1.0, 2.0, 3.0), (5, 5)),
        lambda: Step((1.0, 2.0), (0,)),
        lambda: Constant(float("inf")),
    ],
)
def test_schedules_reject_bad_fields(build):
    with pytest.raises(ValueError):
        build()


def test_schedules_reject_negative_or_non_integer_steps():
    with pytest.raises(ValueError, match="step=-1"):
        Linear(0.0, 1.0, 5)(-1)
    with pytest.raises(TypeError, match="step"):
        Constant(1.0)(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step"):
        Constant(1.0)(True)
    with pytest.raises(TypeError, match="value"):
        Constant("1")  # type: ignore[arg-type]


# -- make_schedule -----------------------------------------------------------------------


def test_make_schedule_from_yaml_style_specs():
    assert make_schedule({"kind": "linear", "start": 0, "end": 1, "total_steps": 10}) == Linear(
        0.0, 1.0, 10
    )
    assert make_schedule({"kind": "exponential", "start": 1, "end": 2, "total_steps": 3}) == (
        Exponential(1.0, 2.0, 3)
    )
    assert make_schedule({"kind": "step", "values": [1, 0.5], "boundaries": [4]}) == Step(
        (1.0, 0.5), (4,)
    )
    assert make_schedule({"kind": "constant", "value": 2}) == Constant(2.0)
    assert make_schedule(0.25) == Constant(0.25)
    assert make_schedule("1e-3") == Constant(1e-3)  # YAML 1.1 reads 1e-3 as a string
    s = Linear(0.0, 1.0, 2)
    assert make_schedule(s) is s


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({"kind": "cosine"}, ValueError, "kind"),
        ({"start": 0}, ValueError, "kind"),
        ({"kind": "linear", "start": 0, "end": 1, "steps": 10}, ValueError, "steps"),
        ({"kind": "linear", "start": 0, "end": 1}, ValueError, "total_steps"),
        ("fast", ValueError, "fast"),
        (True, TypeError, "bool"),
        ([0.1, 0.2], TypeError, "list"),
    ],
)
def test_make_schedule_rejects_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        make_schedule(spec)


# -- curriculum stages -------------------------------------------------------------------


def test_default_curriculum_runs_digital_noise_precision_full():
    c = Curriculum()
    assert [s.name for s in c.stages] == ["digital", "noise", "precision", "full"]
    assert [c.stage_at(e).name for e in (0, 1, 2, 3, 99)] == [
        "digital",
        "noise",
        "precision",
        "full",
        "full",
    ]


def test_stage_boundaries_are_the_start_epochs():
    c = Curriculum.from_config(
        [
            {"name": "warmup", "start_epoch": 0, "noise_scale": 0.0, "quantize": False},
            {
                "name": "ramp",
                "start_epoch": 5,
                "noise_scale": {"kind": "linear", "start": 0, "end": 1, "total_steps": 4},
            },
            {"name": "hold", "start_epoch": 10},
        ]
    )
    assert [c.stage_at(e).name for e in (0, 4, 5, 9, 10, 11)] == [
        "warmup",
        "warmup",
        "ramp",
        "ramp",
        "hold",
        "hold",
    ]
    assert c.stages[1].noise_scale == Linear(0.0, 1.0, 4)


def test_digital_stage_is_ideal_and_keeps_tiles_and_energy_constants():
    p = Curriculum().profile_at(0, 0, BASE)
    assert p.is_ideal
    assert p.mismatch_std == 0.0
    assert (p.tile_rows, p.energy, p.name) == (BASE.tile_rows, BASE.energy, BASE.name)


def test_noise_stage_ramps_the_base_noise_at_infinite_precision():
    c = Curriculum(default_stages(ramp_steps=10))
    start, mid, end = (c.profile_at(1, s, BASE) for s in (0, 5, 10))
    for p in (start, mid, end):
        assert (p.weight_bits, p.weight_range, p.dac_bits, p.adc_bits) == (None,) * 4
        assert (p.crosstalk, p.wire_resistance_ohm, p.transfer_curve) == (0.0, 0.0, "linear")
    assert not start.has_noise and start.mismatch_std == 0.0
    # factor 0.5: amplitudes halve, the shot-noise coefficient (a variance) quarters
    assert mid.read_noise_std == pytest.approx(0.5 * BASE.read_noise_std)
    assert mid.prog_noise_std == pytest.approx(0.5 * BASE.prog_noise_std)
    assert mid.prog_noise_poly == pytest.approx(tuple(0.5 * c for c in BASE.prog_noise_poly))
    assert mid.output_noise_std == pytest.approx(0.5 * BASE.output_noise_std)
    assert mid.shot_noise_coeff == pytest.approx(0.25 * BASE.shot_noise_coeff)
    assert mid.mismatch_std == pytest.approx(0.5 * BASE.mismatch_std)
    assert end.read_noise_std == BASE.read_noise_std
    assert end.prog_noise_poly == BASE.prog_noise_poly


def test_precision_stage_adds_grid_and_converters_without_the_circuit():
    p = Curriculum().profile_at(2, 0, BASE)
    assert (p.weight_bits, p.weight_range, p.dac_bits, p.adc_bits) == (
        BASE.weight_bits,
        BASE.weight_range,
        BASE.dac_bits,
        BASE.adc_bits,
    )
    assert (p.read_noise_std, p.mismatch_std) == (BASE.read_noise_std, BASE.mismatch_std)
    assert (p.crosstalk, p.wire_resistance_ohm, p.transfer_curve) == (0.0, 0.0, "linear")


def test_full_stage_is_the_base_profile():
    assert Curriculum().profile_at(3, 0, BASE) is BASE
    assert Curriculum().profile_at(7, 12345, BASE) == BASE


@pytest.mark.parametrize(
    "stages",
    [
        (),
        (Stage("late", 1),),
        (Stage("a", 0), Stage("b", 3), Stage("c", 3)),
        (Stage("a", 0), Stage("b", 3), Stage("c", 2)),
        (Stage("a", 0), Stage("a", 1)),
    ],
)
def test_curriculum_rejects_bad_stage_orders(stages):
    with pytest.raises(ValueError):
        Curriculum(stages)


def test_curriculum_and_stage_reject_bad_values():
    with pytest.raises(TypeError, match="Stage"):
        Curriculum(({"name": "a", "start_epoch": 0},))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_epoch"):
        Stage("a", -1)
    with pytest.raises(ValueError, match="name"):
        Stage("", 0)
    with pytest.raises(TypeError, match="quantize"):
        Stage("a", 0, quantize="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch=-1"):
        Curriculum().stage_at(-1)
    with pytest.raises(ValueError, match="noise factor"):
        Curriculum((Stage("a", 0, noise_scale=-0.5),)).profile_at(0, 0, BASE)
    with pytest.raises(TypeError, match="base_profile"):
        Curriculum().profile_at(0, 0, "pcm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fields"):
        Curriculum.from_config([{"name": "a", "start": 0}])


# -- applying a profile to a model -------------------------------------------------------


def test_apply_profile_sets_every_analog_layer_and_clears_its_caches():
    gen = torch.Generator().manual_seed(0)
    layers = [AnalogLinear(6, 4, profile=BASE), AnalogLinear(4, 3, profile=BASE)]
    model = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1]).double().eval()
    x = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # fills _mvm_cache and _weight_cache from BASE
    assert all(layer._mvm_cache and layer._weight_cache for layer in layers)

    digital = Curriculum().profile_at(0, 0, BASE).replace(learn_ranges=False)
    assert apply_profile(model, digital) is model
    for layer in layers:
        assert layer.profile is digital
        assert not layer._mvm_cache and not layer._weight_cache
        assert not layer.input_range.requires_grad and not layer.output_range.requires_grad
    expected = F.linear(F.relu(F.linear(x, *_params(layers[0]))), *_params(layers[1]))
    assert torch.equal(model(x), expected)  # the ideal profile takes the exact digital path

    apply_profile(model, BASE)
    assert all(layer.profile is BASE and layer.input_range.requires_grad for layer in layers)
    with pytest.raises(TypeError, match="HardwareProfile"):
        apply_profile(model, "ideal")  # type: ignore[arg-type]


def _params(layer: AnalogLinear) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.weight, layer.bias
