"""Analog-layer activations on the simulator and on a chip, and their Jensen–Shannon gap.

Seed 001 (Sec. 2.4, *Calibration*) scores a method by the "Jensen–Shannon divergence
between learned and hardware activation distributions". Here that is, per analog layer
``l``, the distribution of the layer's output values (the ADC outputs plus bias: every
element of every sample, pooled) when the trained network runs

* on the **simulator** it was trained against: the training profile's surrogate with fresh
  noise each forward (eval mode, ``set_eval_noise``), and
* on a **programmed chip** (:class:`~analogtorch.hardware.chip.Chip`) at time ``t``,

both on the same inputs. :func:`histogram_js` estimates ``JS(P_sim,l ‖ P_chip,l)`` (nats, in
``[0, ln 2]``) from two sample sets with one set of equal-width bins over their pooled
range. The plug-in estimate is biased upwards by finite samples (about ``(B − 1)/(4N)``
for ``B`` bins and ``N`` samples a side when both come from one distribution);
:func:`activation_js` therefore also returns the floor: the JS between two independent
simulator passes.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..devices import module_device
from ..hardware.chip import Chip
from ..hardware.random import derive_seed, seed_noise
from ..losses import js_divergence
from ..nn.base import analog_layers, set_eval_noise


@contextlib.contextmanager
def recorded_outputs(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Inside the block, every output of every analog layer of ``model`` is appended to
    ``outputs[name]`` (not detached: gradients flow through them)."""
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in analog_layers(model)}
    handles = [
        layer.register_forward_hook(lambda _m, _i, out, name=name: outputs[name].append(out))
        for name, layer in analog_layers(model).items()
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def histogram_js(a: torch.Tensor, b: torch.Tensor, bins: int = 64) -> float:
    """``JS`` (nats) of the empirical distributions of all elements of ``a`` and ``b``:
    ``bins`` equal-width bins over ``[min, max]`` of both together, then
    :func:`~analogtorch.losses.js_divergence` of the two normalised histograms."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins={bins!r}: use an integer >= 2")
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError(f"need samples on both sides, got {a.numel()} and {b.numel()}")
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    lo, hi = float(torch.minimum(a.min(), b.min())), float(torch.maximum(a.max(), b.max()))
    if hi <= lo:  # one value on both sides: the same distribution
        return 0.0
    p = torch.histc(a, bins, lo, hi)
    q = torch.histc(b, bins, lo, hi)
    return float(js_divergence(p / p.sum(), q / q.sum()))


def _layer_outputs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    device = module_device(model)
    with torch.no_grad(), recorded_outputs(model) as outputs:
        for x in inputs:
            model(x.to(device))
    return {name: torch.cat([o.flatten() for o in outs]) for name, outs in outputs.items()}


def activation_js(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    chips: Sequence[Chip],
    time_s: float,
    *,
    seed: int,
    bins: int = 64,
) -> dict[str, dict[str, list[float] | float]]:
    """Per analog layer of ``model`` (analog, from ``convert``): ``{"chips": [JS(sim, chip_k)
    for each chip], "floor": JS(sim, sim')}`` in nats (module docstring). The simulator runs
    each layer at its own profile with noise streams from ``seed``; ``model`` is not
    changed (a copy is read)."""
    if not analog_layers(model):
        raise ValueError("model has no analog layers: convert it with analogtorch.convert")
    net = set_eval_noise(copy.deepcopy(model).eval(), True)
    seed_noise(net, derive_seed(seed, "simulator"))
    simulated = _layer_outputs(net, inputs)
    floor = _layer_outputs(net, inputs)  # the streams have moved on: an independent pass
    set_eval_noise(net, False)
    per_chip = []
    for chip in chips:
        with chip.deploy(net, time_s=time_s):
            per_chip.append(_layer_outputs(net, inputs))
    return {
        name: {
            "chips": [histogram_js(sim, outputs[name], bins) for outputs in per_chip],
            "floor": histogram_js(sim, floor[name], bins),
        }
        for name, sim in simulated.items()
    }
