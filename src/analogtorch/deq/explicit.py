"""The explicit (feed-forward) twin of a hybrid DEQ: the same parts, no equilibrium.

    u   = DAC(g_θ(x)),   z_0 = 0,   z_k = f_φ(z_{k−1}, u)  (k = 1 … K),   y = h_ω(ADC(z_K))

With ``K = 2`` this is ``y = h_ω(ADC(σ(S(σ(u), W_z) + u)))`` (the first step reads the
crossbar at ``z = 0``): the analog core applied once to the encoder's state — the same
parameters (θ, φ, ω), the same hardware and the same contractivity constraint on ``W_z``
as the DEQ, but the output is not a fixed point. Training it by backprop through the
``K`` steps on the same budget measures how much the equilibrium (the feedback iterated to
convergence) adds.
"""

from __future__ import annotations

import torch

from .hybrid import HybridDEQ
from .options import SolverStats


class ExplicitHybrid(HybridDEQ):
    """A :class:`HybridDEQ` whose forward is ``steps`` applications of the core from rest.

    ``steps`` (>= 1) follows the arguments of :class:`HybridDEQ` (``forward`` must stay
    ``"solver"``; the solver is not used). :meth:`from_hybrid` builds the twin of a hybrid
    DEQ. ``last_forward_stats`` reports ``steps`` iterations; gradients are plain backprop
    through the steps.
    """

    def __init__(self, *args, steps: int = 2, **kwargs) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r}: must be an int >= 1 (2: the core applied once)")
        if kwargs.get("forward", "solver") != "solver":
            raise ValueError(f"forward={kwargs['forward']!r}: an explicit net has no relaxation")
        super().__init__(*args, **kwargs)
        self.steps = steps

    @classmethod
    def from_hybrid(cls, model: HybridDEQ, steps: int = 2) -> ExplicitHybrid:
        """The explicit twin of ``model``: its encoder, core and head (shared, not copied),
        its converters' resolutions and full scales."""
        twin = cls(
            model.encoder,
            model.core,
            model.head,
            model.deq.solver,
            dac_bits=model.dac.bits,
            adc_bits=model.adc.bits,
            forward_options=model.deq.forward_options,
            steps=steps,
        )
        twin.load_state_dict(model.state_dict())
        return twin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.injection(x)
        z = self.deq.initial_state(u)
        for _ in range(self.steps):
            z = self.core(z, u)
        self.deq.last_forward_stats = SolverStats(
            iterations=self.steps, converged=False, reason="max_iter"
        )
        self.last_injection, self.last_state = u, z
        return self.head(self.adc(z))

    def extra_repr(self) -> str:
        return f"explicit, steps={self.steps}"
