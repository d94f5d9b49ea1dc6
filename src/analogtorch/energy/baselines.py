"""Digital baselines: what the same network costs on a GPU-class or an 8-bit ASIC-class chip.

A baseline is a handful of per-operation constants shipped as cited YAML presets
(``energy/baselines/*.yaml``). The cost of one layer call with ``M`` MACs, ``n_w`` weights,
``n_in`` + ``n_out`` activations and ``n_op`` elementwise ops is

``E = M·mac_j + n_w·(weight_bits/8)·(weight_j_per_byte + (k−1)·activation_j_per_byte)
      + (n_in + n_out)·(activation_bits/8)·activation_j_per_byte + n_op·op_j``   (joules)

``t = M / macs_per_s + k·layer_overhead_s``                                      (seconds)

for ``k`` calls of the layer per inference. With ``weight_memory_ref_bytes`` set, the weight
memory is sized to the model: ``weight_j_per_byte`` is the cost at that reference capacity
and scales as ``sqrt(capacity / reference)`` (bit-line and word-line length grow as the
square root of an SRAM's capacity; Horowitz's 8 KB → 1 MB figures rise 10× for 128× the
capacity, ≈ sqrt(128)), never below the 8 KB figure. Weights come from the weight memory once per
inference (reused across a convolution's positions); a layer called again (an equilibrium
core's iterations) re-reads them from the on-chip buffer at the activation cost. This is
the best case for a digital design at batch 1.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..hardware.errors import explain
from ..packaged import packaged_names, read_packaged


class DigitalBaseline(BaseModel):
    """Validated per-operation energy/latency constants of a digital accelerator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    mac_j: float = Field(gt=0, description="energy of one multiply-accumulate, J")
    weight_j_per_byte: float = Field(ge=0, description="weight fetch energy, J/byte")
    activation_j_per_byte: float = Field(ge=0, description="activation read/write, J/byte")
    op_j: float = Field(ge=0, description="one elementwise op (activation, norm, pool), J")
    weight_bits: int = Field(ge=1, le=64)
    activation_bits: int = Field(ge=1, le=64)
    macs_per_s: float = Field(gt=0, description="sustained MAC throughput, 1/s")
    layer_overhead_s: float = Field(0.0, ge=0, description="fixed latency per layer call, s")
    weight_memory_ref_bytes: float | None = Field(
        None, gt=0, description="capacity at which weight_j_per_byte holds; None = fixed cost"
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise explain(err, "DigitalBaseline", type(self)) from None

    @classmethod
    def preset(cls, name: str) -> DigitalBaseline:
        """Load a shipped baseline (see :func:`baseline_names`)."""
        return cls(**read_packaged(__package__, "baselines", name, "digital baseline"))

    def weight_byte_energy_j(self, model_weights: float) -> float:
        """Energy (J) to fetch one weight byte from a memory holding ``model_weights``."""
        if self.weight_memory_ref_bytes is None:
            return self.weight_j_per_byte
        capacity = max(model_weights * self.weight_bits / 8, 8 * 1024)
        return self.weight_j_per_byte * (capacity / self.weight_memory_ref_bytes) ** 0.5

    def layer_energy_j(
        self,
        macs: float,
        weights: float,
        calls: float,
        activations: float,
        ops: float,
        model_weights: float = 0.0,
    ) -> dict[str, float]:
        """Energy breakdown (J) of one layer's work: compute, weight and activation traffic.

        ``model_weights`` is the whole model's weight count (sizes the weight memory).
        """
        fetch = self.weight_byte_energy_j(model_weights)
        refetch = max(calls - 1.0, 0.0) * self.activation_j_per_byte
        return {
            "compute": macs * self.mac_j + ops * self.op_j,
            "weights": weights * self.weight_bits / 8 * (fetch + refetch),
            "activations": activations * self.activation_bits / 8 * self.activation_j_per_byte,
        }

    def layer_latency_s(self, macs: float, calls: float) -> float:
        """Latency (s) of ``macs`` MACs spread over ``calls`` layer calls."""
        return macs / self.macs_per_s + calls * self.layer_overhead_s


def baseline_names() -> list[str]:
    """Names of the digital baselines shipped inside the package."""
    return packaged_names(__package__, "baselines")
