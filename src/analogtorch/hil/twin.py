"""Learned digital twin: the hardware model plus a small learned correction per layer.

For an analog layer with nominal hardware-model output ``ŷ = S(x, W) + b`` (the toolkit's
surrogate on the user's profile, noise off), the twin predicts the backend's output as

``y_twin = a ⊙ ŷ + c + s · h(ŷ / s)``

with a per-output gain ``a`` (init 1) and offset ``c`` (init 0), a scalar nonlinearity ``h``
shared by all outputs (a 1→16→1 tanh MLP initialised to zero, for compressive or expansive
I–V and read-out curves) and ``s`` the rms of ``ŷ`` seen at the last fit. It is fitted to
backend input/output pairs by least squares (Adam on the mean squared error), so it is
differentiable in ``x``, ``W`` and ``b`` through ``S`` and stays valid as the weights change.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerTwin(nn.Module):
    """The learned correction of one layer's nominal output (see the module docstring)."""

    def __init__(self, out_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(out_features))
        self.offset = nn.Parameter(torch.zeros(out_features))
        self.shape_net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.shape_net[2].weight)
        nn.init.zeros_(self.shape_net[2].bias)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, nominal: torch.Tensor) -> torch.Tensor:
        u = (nominal / self.scale).unsqueeze(-1)
        return self.gain * nominal + self.offset + self.scale * self.shape_net(u).squeeze(-1)

    def fit(
        self, nominal: torch.Tensor, measured: torch.Tensor, *, steps: int = 200, lr: float = 1e-2
    ) -> float:
        """Least-squares fit to pairs (nominal, measured), each (n, out); returns the final
        relative rms error ``‖y_twin − y‖ / ‖y‖``."""
        if nominal.shape != measured.shape or nominal.ndim != 2:
            raise ValueError(
                f"pairs must both be (n, out): got {tuple(nominal.shape)} and "
                f"{tuple(measured.shape)}"
            )
        nominal, measured = nominal.detach(), measured.detach()
        with torch.no_grad():
            self.scale.fill_(float(nominal.square().mean().sqrt().clamp_min(1e-8)))
        self.requires_grad_(True)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        norm = measured.square().mean().clamp_min(1e-12)
        with torch.enable_grad():  # callers may collect pairs under no_grad
            for _ in range(steps):
                loss = (self(nominal) - measured).square().mean() / norm
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.requires_grad_(False)
        with torch.no_grad():
            return float(((self(nominal) - measured).square().mean() / norm).sqrt())
