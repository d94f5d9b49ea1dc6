"""What the equilibrium of a hybrid DEQ costs on a digital accelerator (a digital DEQ).

The same trained weights run digitally (ideal profile: no device noise, no converters),
one inference at a time (batch 1, as the analog core relaxes one input at a time): the
solver's iterations ``K`` per sample are counted, and each iteration is one ``n × n``
matrix–vector product of the core plus the solver's own work (Anderson with history ``m``:
≈ ``2 m n`` MACs to update the residual Gram matrix and mix the history), one activation
per state entry. With a :class:`~analogtorch.energy.DigitalBaseline` (cited per-operation
constants) the core's cost per inference is

``E = K (n² + 2 m n) mac_j + n² (bits/8) (weight_j + (K − 1) act_j) + 2 n K (bits/8) act_j
      + n K op_j``                                                                   (J)

``t = K (n² + 2 m n) / macs_per_s + K · layer_overhead_s``                           (s)

(:meth:`DigitalBaseline.layer_energy_j`, :meth:`~DigitalBaseline.layer_latency_s`: weights
fetched once, then re-read from the on-chip buffer each iteration). The digital encoder
and head are the same in the hybrid and are not counted here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

from ..energy.baselines import DigitalBaseline
from ..hardware.profile import HardwareProfile
from .hybrid import HybridDEQ
from .options import SolverOptions


@torch.no_grad()
def digital_iterations(
    model: HybridDEQ, x: torch.Tensor, options: SolverOptions | None = None
) -> list[int]:
    """Solver iterations of each input of ``x`` solved alone on the digital twin of
    ``model`` (a copy on the ideal profile, so ``model`` itself is untouched); ``options``
    default to the model's forward options."""
    twin = model.with_forward("solver")
    twin.set_profile(HardwareProfile.preset("ideal"))
    twin.eval()
    if options is not None:
        twin.deq.forward_options = options
    counts = []
    for sample in x.split(1):
        twin.deq(twin.injection(sample))
        counts.append(twin.last_forward_stats.iterations)
    return counts


def digital_core_cost(
    width: int, iterations: float, baseline: str, *, history: int = 5
) -> dict[str, float]:
    """Energy (J) and latency (s) of ``iterations`` solver iterations of a ``width``-wide
    dense core on the digital ``baseline`` (see the module docstring), and the MACs."""
    if width < 1 or iterations < 1:
        raise ValueError(f"width={width}, iterations={iterations}: both must be >= 1")
    b = DigitalBaseline.preset(baseline)
    weights = float(width * width)
    macs = iterations * (weights + 2.0 * history * width)
    parts = b.layer_energy_j(
        macs, weights, iterations, 2.0 * width * iterations, width * iterations, weights
    )
    return {
        "energy_j": sum(parts.values()),
        "latency_s": b.layer_latency_s(macs, iterations),
        "macs": macs,
    }


def digital_deq_cost(
    model: HybridDEQ,
    x: torch.Tensor,
    baselines: Sequence[str] = ("asic-int8", "gpu-a100"),
    options: SolverOptions | None = None,
) -> dict[str, object]:
    """Mean iterations per input of the digital twin (:func:`digital_iterations`) and the
    core's energy and latency per inference on each baseline at that mean."""
    counts = digital_iterations(model, x, options)
    mean = statistics.fmean(counts)
    history = (options or model.deq.forward_options).memory
    return {
        "iterations": mean,
        "iterations_std": statistics.stdev(counts) if len(counts) > 1 else 0.0,
        "baselines": {
            name: digital_core_cost(model.core.width, mean, name, history=history)
            for name in baselines
        },
    }
