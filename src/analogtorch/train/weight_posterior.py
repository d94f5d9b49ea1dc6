"""A learned Gaussian posterior over the analog weights against the hardware prior (seed 001).

Seed 001 (Sec. 2.2) regularises training with ``L_noise = KL(q_θ(W) ‖ p(W))``: a *learned*
weight distribution against a prior derived from the hardware's noise statistics. Here,
per weight ``W_ji`` of every analog ``Linear`` / ``Conv2d`` layer:

* posterior ``q = N(μ_ji, σ_q,ji²)``: ``μ`` is the layer's weight, ``σ_q = softplus(ρ)``
  a learned std (weight units), initialised to ``σ_hw`` (so the KL starts at 0);
* prior ``p = N(μ_ji, σ_hw,ji²)``: the programmed value plus the noise the device adds,
  ``σ_hw`` from :func:`~analogtorch.losses.hardware_weight_std` (programming noise and
  read noise at ``time_s``; detached, recomputed from the current ``μ``);
* ``KL = ln(σ_hw/σ_q) + σ_q²/(2σ_hw²) − 1/2`` per weight (nats; the means cancel), zero at
  ``σ_q = σ_hw``: a weight that claims less spread than the hardware will deliver pays.

The training forward samples ``W̃ = μ + σ_q ⊙ ε`` with the local reparameterisation trick
(Kingma, Salimans & Welling 2015, "Variational dropout and the local reparameterization
trick", Sec. 2.3): the layer output gains ``sqrt(op(x², σ_q²)) ⊙ ε'``, ``op`` the layer's
own linear map (``F.linear`` / ``F.conv2d``) and ``ε'`` standard normal per output element
— the exact distribution of ``op(x, W̃) − op(x, μ)`` for independent weights, at the cost
of one extra product. This noise comes on top of the surrogate's (which the method's
``noise`` option controls) and only in training mode off a chip; ``σ_q`` thus gets
gradients from the task loss (which prefers it small) and from the KL (which pulls it to
``σ_hw``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.noise import read_noise_std_at
from ..hardware.profile import HardwareProfile
from ..hardware.random import NoiseSource, derive_seed
from ..losses import gaussian_kl, hardware_weight_std
from ..nn.base import analog_layers


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """``ρ`` with ``softplus(ρ) = y`` for ``y > 0`` (``y + log(−expm1(−y))``, stable)."""
    return y + torch.log(-torch.expm1(-y))


class VariationalWeights(nn.Module):
    """``model`` whose analog weights carry a learned posterior (module docstring).

    Train this wrapper (its parameters are the model's and one ``ρ`` per analog weight);
    :meth:`kl` is the regulariser, ``.model`` the trained network. ``reseed(seed)`` restarts
    the sampling stream (the Trainer does so every epoch through ``seed_noise``).
    """

    def __init__(
        self, model: nn.Module, profile: HardwareProfile, *, time_s: float = 0.0, seed: int = 0
    ) -> None:
        super().__init__()
        layers = analog_layers(model)
        bad = [n for n, m in layers.items() if not isinstance(m, nn.Linear | nn.Conv2d)]
        if not layers or bad:
            raise ValueError(
                f"a learned weight posterior needs analog Linear/Conv2d layers; got "
                f"{len(layers)} analog layers, unsupported: {bad}"
            )
        self.model = model
        self.profile = profile
        self.read_std = read_noise_std_at(profile, time_s)
        if not profile.has_weight_noise and self.read_std == 0.0:
            raise ValueError(
                f"profile {profile.name!r} has no programming or read noise: the hardware "
                "prior N(μ, 0) is degenerate; use a noisy profile or kl_posterior: hardware"
            )
        self.names = list(layers)
        self.rho = nn.ParameterList(
            nn.Parameter(_inverse_softplus(self.prior_std(m.weight))) for m in layers.values()
        )
        self.reseed(seed)

    def prior_std(self, weight: torch.Tensor) -> torch.Tensor:
        """``σ_hw`` of every element of ``weight`` (weight units, detached)."""
        return hardware_weight_std(weight, self.profile, self.read_std)

    def posterior_stds(self) -> list[torch.Tensor]:
        """``σ_q = softplus(ρ)`` per analog layer, in programming order."""
        return [F.softplus(rho) for rho in self.rho]

    def kl(self) -> torch.Tensor:
        """Mean over all analog weights of ``KL(q ‖ p)`` (nats per weight)."""
        layers = analog_layers(self.model)
        total, count = torch.zeros((), device=self.rho[0].device), 0
        for name, std_q in zip(self.names, self.posterior_stds(), strict=True):
            mu = layers[name].weight
            total = total + gaussian_kl(mu, std_q, mu, self.prior_std(mu)).sum()
            count += mu.numel()
        return total / count

    def reseed(self, seed: int) -> None:
        self._source = NoiseSource(derive_seed(seed, "weight-posterior"), n_streams=1)

    def noise_state(self) -> dict[str, object]:
        """Where the sampling stream stands."""
        return {"source": self._source.get_state()}

    def load_noise_state(self, state: dict[str, object]) -> None:
        """Continue the sampling stream from :meth:`noise_state`'s ``state``."""
        self._source.set_state(state["source"])  # type: ignore[arg-type]

    def _output_noise(self, layer: nn.Module, x: torch.Tensor, std_q: torch.Tensor):
        """``sqrt(op(x², σ_q²)) ⊙ ε'``: the output spread of ``W̃ − μ`` (module docstring)."""
        if isinstance(layer, nn.Conv2d):
            var = F.conv2d(
                x.square(), std_q.square(), None, layer.stride, layer.padding, layer.dilation,
                layer.groups,
            )  # fmt: skip
        else:
            var = F.linear(x.square(), std_q.square())
        eps = self._source.normal(var.shape, var.dtype).to(var.device)
        return var.clamp_min(torch.finfo(var.dtype).tiny).sqrt() * eps

    @contextlib.contextmanager
    def _sampling(self) -> Iterator[None]:
        layers = analog_layers(self.model)
        handles = []
        for name, std_q in zip(self.names, self.posterior_stds(), strict=True):

            def hook(layer, inputs, output, std_q=std_q):  # type: ignore[no-untyped-def]
                if not layer.training or layer.chip_read is not None:
                    return output
                return output + self._output_noise(layer, inputs[0], std_q)

            # first among the layer's hooks: any other (a recorder) sees the sampled output
            handles.append(layers[name].register_forward_hook(hook, prepend=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self._sampling():
            return self.model(*args, **kwargs)

    def extra_repr(self) -> str:
        count = sum(r.numel() for r in self.rho)
        return f"{count} posterior stds, prior from {self.profile.name!r}, σ_r={self.read_std:g}"
