"""``estimate(model, profile, input_shape)``: energy, latency and area of one inference.

The model is traced once (see :mod:`.workload`); each weight layer is costed on crossbar
tiles of the profile (see :mod:`.layer_cost`), each activation / normalisation / pooling on
the digital periphery, and the same work on every requested digital baseline (see
:mod:`.baselines`). Static leakage is ``P = leakage_w_per_mm2 · area`` over each layer's
latency. Results are per input sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..hardware.profile import HardwareProfile
from ..nn.base import analog_layers
from .baselines import DigitalBaseline
from .converters import adc_enob, converter_bits
from .layer_cost import (
    LayerCost,
    analog_layer_cost,
    attention_cost,
    digital_layer_cost,
    elementwise_cost,
)
from .report import EnergyReport
from .workload import SOFTMAX_OPS_PER_SCORE, LayerWorkload, trace_workload

DEFAULT_BASELINES = ("gpu-a100", "asic-int8")


def estimate(
    model: nn.Module,
    profile: HardwareProfile | None = None,
    input_shape: Sequence[int] | None = None,
    *,
    inputs: torch.Tensor | None = None,
    baselines: Sequence[str | DigitalBaseline] = DEFAULT_BASELINES,
    name: str | None = None,
) -> EnergyReport:
    """Per-inference energy (J), latency (s) and area (mm²) of ``model`` on ``profile``.

    Args:
        model: a converted model (its analog layers go on crossbars, plain weight layers
            left by ``convert(skip=...)`` run on the digital unit), or a digital model,
            costed as if every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` /
            ``nn.ConvTranspose2d`` were converted.
        profile: hardware profile with the energy constants; defaults to the profile of the
            model's analog layers.
        input_shape: shape of one input sample (no batch axis); needed without ``inputs``.
        inputs: a batch of real inputs. With it, each crossbar row's input activity is
            measured; without it, a seeded Gaussian batch traces the shapes and the
            profile's ``energy.input_activity`` stands in for the activity.
        baselines: digital baseline names (see ``baseline_names()``) or objects.
        name: the model's name in the report.
    """
    relaxing = [
        n for n, m in model.named_modules() if getattr(m, "forward_mode", "") == "relaxation"
    ]
    if relaxing:
        raise ValueError(
            f"{relaxing[0] or 'the model'} settles its core by relaxation: its integration steps "
            "are not crossbar reads, so a traced count would be wrong; estimate the solver "
            "forward (model.with_forward('solver')) for the iterative cost, or use "
            "energy.estimate_dynamics for the settling energy"
        )
    profile = _resolve_profile(model, profile)
    if inputs is None:
        if input_shape is None:
            raise ValueError("give input_shape (one sample, no batch axis) or a batch of inputs")
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape={shape}: need positive sizes, e.g. (3, 32, 32)")
        generator = torch.Generator().manual_seed(0)
        param = next(model.parameters(), torch.empty(0))
        inputs = torch.randn((1, *shape), generator=generator).to(param.device, param.dtype)
        measured = False
    else:
        shape = tuple(inputs.shape[1:])
        measured = True
    works = trace_workload(model, inputs, measure_activity=measured)
    if not any(w.kind != "elementwise" for w in works):
        raise ValueError(
            f"{type(model).__name__} has no weight layer (nn.Linear, nn.Conv1d, nn.Conv2d, "
            "nn.ConvTranspose2d) reached by its forward; "
            "nothing to put on a crossbar"
        )
    digital = [
        b if isinstance(b, DigitalBaseline) else DigitalBaseline.preset(b) for b in baselines
    ]
    costs = [_cost(work, profile) for work in works]
    _add_leakage(costs, profile)
    model_weights = float(sum(w.weights for w in works))
    for work, cost in zip(works, costs, strict=True):
        _add_baselines(work, cost, digital, model_weights)
    return EnergyReport(
        model=name or type(model).__name__,
        profile=profile.name,
        input_shape=shape,
        layers=costs,
        baselines=[b.name for b in digital],
        assumptions=_assumptions(profile, measured, digital),
    )


def _resolve_profile(model: nn.Module, profile: HardwareProfile | None) -> HardwareProfile:
    if profile is not None:
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
        return profile
    layers = analog_layers(model)
    if not layers:
        raise ValueError(
            "the model has no analog layers to take a profile from: pass profile=, e.g. "
            "HardwareProfile.preset('pcm')"
        )
    return next(iter(layers.values())).profile


def _cost(work: LayerWorkload, profile: HardwareProfile) -> LayerCost:
    if work.kind == "analog":
        return analog_layer_cost(work, profile)
    if work.kind == "digital":
        return digital_layer_cost(work, profile)
    if work.kind == "attention":
        return attention_cost(work, profile)
    return elementwise_cost(work, profile)


def _add_leakage(costs: list[LayerCost], profile: HardwareProfile) -> None:
    leak_w = profile.energy.leakage_w_per_mm2 * sum(c.total_area_mm2 for c in costs)
    for cost in costs:
        cost.energy_j["leakage"] = leak_w * cost.latency_s


def _add_baselines(
    work: LayerWorkload,
    cost: LayerCost,
    baselines: Sequence[DigitalBaseline],
    model_weights: float,
) -> None:
    for baseline in baselines:
        if work.kind == "elementwise":
            parts = baseline.layer_energy_j(0.0, 0.0, 0.0, 0.0, work.ops)
            latency = work.ops / baseline.macs_per_s
        else:
            parts = baseline.layer_energy_j(
                work.macs,
                work.weights,
                work.calls,
                work.elements_in + work.elements_out,
                work.ops,
                model_weights,
            )
            latency = baseline.layer_latency_s(work.macs, work.calls)
        cost.baselines_j[baseline.name] = sum(parts.values())
        cost.baselines_s[baseline.name] = latency


def _assumptions(
    profile: HardwareProfile, measured: bool, baselines: Sequence[DigitalBaseline]
) -> list[str]:
    c = profile.energy
    dac_bits = converter_bits(profile.dac_bits, c)
    adc_bits = converter_bits(profile.adc_bits, c)
    activity = "E[|x/r|]" if c.input_encoding == "pwm" else "E[(x/r)²]"
    lines = [
        "per input sample (batch 1); layers run one after another (no pipelining across layers)",
        f"weights stationary in {profile.tile_rows}x{profile.tile_cols} tiles, "
        f"{c.devices_per_weight} devices per weight, whole tiles allocated per layer",
        f"DAC {dac_bits} bit, ADC {adc_bits} bit (ENOB {adc_enob(adc_bits, c):g}, "
        f"{c.adc_fom_model} FOM), one ADC per {c.adc_share} column(s), per-tile ADCs",
        f"inputs {c.input_encoding}-coded; crossbar energy uses row activity {activity} "
        + ("measured on the given inputs" if measured else f"= {c.input_activity} (no inputs)"),
        "conductances from the weights as mapped by the hardware model (per-row scale, "
        "G_min = 0): E = t_read·V²·g_max·Σ a_j ĝ_ij",
        "operations outside nn.Module calls (residual additions, functional activations) "
        "are not counted, except attention's Q K^T and A V products (8-bit MACs on the "
        f"digital unit) and its softmax ({SOFTMAX_OPS_PER_SCORE:g} ops per score)",
    ]
    if profile.dac_bits is None or profile.adc_bits is None:
        lines.append(f"ideal (unset) converters costed at {c.default_converter_bits} bits")
    if c.leakage_w_per_mm2 == 0:
        lines.append("leakage not modelled (profile energy.leakage_w_per_mm2 = 0)")
    lines += [
        f"baseline {b.name}: {b.description}; weights fetched once per inference"
        + (" from a memory sized to the model" if b.weight_memory_ref_bytes else "")
        + ", "
        f"{b.weight_bits}-bit weights, {b.activation_bits}-bit activations"
        for b in baselines
    ]
    return lines
