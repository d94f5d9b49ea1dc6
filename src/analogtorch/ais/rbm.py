"""Bernoulli–Bernoulli restricted Boltzmann machine: the earlier analog generative baseline.

An RBM is an Ising model on a bipartite graph of visible spins ``v ∈ {0,1}^V`` and hidden
spins ``h ∈ {0,1}^H`` (Smolensky 1986; Hinton 2002):

    E(v, h) = −vᵀ W h − bᵀ v − cᵀ h,     p(v, h) = exp(−E(v, h)) / Z,
    F(v) = −log Σ_h exp(−E(v, h)) = −bᵀ v − Σ_j softplus(c_j + (vᵀ W)_j),
    p(h_j = 1 | v) = σ(c_j + (vᵀ W)_j),   p(v_i = 1 | h) = σ(b_i + (W h)_i).

Sampling is block Gibbs sampling (all hidden spins given the visibles, then all visibles
given the hiddens), which is what an analog Ising machine with this coupling graph would
run. Training maximises the log-likelihood with persistent contrastive divergence (PCD,
Tieleman 2008, "Training Restricted Boltzmann Machines using Approximations to the
Likelihood Gradient"):

    ∂ log p(v) / ∂W = ⟨v hᵀ⟩_data − ⟨v hᵀ⟩_model,

with the model expectation estimated on persistent fantasy chains advanced by ``k`` Gibbs
steps per update. Every random draw takes an explicit ``torch.Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..hardware.random import derive_seed, draw_like
from ..progress import progress_bar


def _bernoulli(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``1[u < p]`` with ``u ~ U[0, 1)`` from ``generator`` (any device), as ``p``'s dtype."""
    return (draw_like("uniform", p.shape, generator, p) < p).to(p.dtype)


def _all_states(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """All ``2^n`` binary vectors, shape ``(2^n, n)``, in lexicographic order."""
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), device=device, dtype=dtype)


class BernoulliRBM(nn.Module):
    """RBM with ``n_visible`` visible and ``n_hidden`` hidden binary units.

    Parameters: ``weight`` ``W`` (n_visible, n_hidden), ``visible_bias`` ``b``,
    ``hidden_bias`` ``c``. Initialised ``W ~ N(0, init_std²)`` (Hinton 2010, "A Practical
    Guide to Training RBMs": 0.01), biases zero; ``seed`` makes the draw reproducible.
    """

    def __init__(
        self, n_visible: int, n_hidden: int, *, init_std: float = 0.01, seed: int = 0
    ) -> None:
        super().__init__()
        if n_visible < 1:
            raise ValueError(f"n_visible={n_visible}: must be >= 1")
        if n_hidden < 1:
            raise ValueError(f"n_hidden={n_hidden}: must be >= 1")
        if not init_std >= 0:
            raise ValueError(f"init_std={init_std}: must be >= 0")
        self.n_visible = n_visible
        self.n_hidden = n_hidden
        self.init_std = init_std
        self.weight = nn.Parameter(torch.empty(n_visible, n_hidden))
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w = self.init_std * torch.randn(self.n_visible, self.n_hidden, generator=gen)
            self.weight.copy_(w)
            self.visible_bias.zero_()
            self.hidden_bias.zero_()

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``E(v, h) = −vᵀWh − bᵀv − cᵀh`` for batches ``v`` (n, V), ``h`` (n, H) → (n,)."""
        return -(((v @ self.weight) * h).sum(-1) + v @ self.visible_bias + h @ self.hidden_bias)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j) = −log Σ_h exp(−E(v, h))`` → (n,)."""
        return -(v @ self.visible_bias) - F.softplus(v @ self.weight + self.hidden_bias).sum(-1)

    def hidden_probabilities(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h = 1 | v) = σ(c + vᵀW)``, shape (n, H)."""
        return torch.sigmoid(v @ self.weight + self.hidden_bias)

    def visible_probabilities(self, h: torch.Tensor) -> torch.Tensor:
        """``p(v = 1 | h) = σ(b + W h)``, shape (n, V)."""
        return torch.sigmoid(h @ self.weight.T + self.visible_bias)

    def gibbs_step(
        self, v: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One block Gibbs sweep ``h ~ p(h | v)``, ``v' ~ p(v | h)``.

        Returns ``(v', p(v' = 1 | h))``: the new binary visibles and their conditional
        probabilities (the mean-field pixels used as the final images).
        """
        h = _bernoulli(self.hidden_probabilities(v), generator)
        p_v = self.visible_probabilities(h)
        return _bernoulli(p_v, generator), p_v

    @torch.no_grad()
    def log_partition(self) -> torch.Tensor:
        """``log Z`` exactly, by enumerating the smaller layer (``min(V, H) ≤ 24`` only).

        Summing out the larger layer analytically:
        ``log Z = logsumexp_v(−F(v)) = logsumexp_h(cᵀh + Σ_i softplus(b_i + (Wh)_i))``.
        """
        w = self.weight
        if min(self.n_visible, self.n_hidden) > 24:
            raise ValueError(
                f"log_partition enumerates 2^min(V, H) states; V={self.n_visible}, "
                f"H={self.n_hidden} is too large (limit 24)"
            )
        if self.n_visible <= self.n_hidden:
            v = _all_states(self.n_visible, w.device, w.dtype)
            return torch.logsumexp(-self.free_energy(v), 0)
        h = _all_states(self.n_hidden, w.device, w.dtype)
        log_weights = h @ self.hidden_bias + F.softplus(h @ w.T + self.visible_bias).sum(-1)
        return torch.logsumexp(log_weights, 0)

    @torch.no_grad()
    def log_likelihood(self, v: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(v) = −F(v) − log Z`` per row (small models; see ``log_partition``)."""
        return -self.free_energy(v) - self.log_partition()

    @torch.no_grad()
    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the mean-field reconstruction ``σ(b + W σ(c + vᵀW))``."""
        recon = self.visible_probabilities(self.hidden_probabilities(v))
        return ((recon - v) ** 2).mean()

    @torch.no_grad()
    def fit(
        self,
        data: torch.Tensor,
        *,
        epochs: int,
        batch_size: int = 64,
        lr: float = 0.01,
        k: int = 1,
        seed: int = 0,
        weight_decay: float = 0.0,
        binarize: bool = True,
        progress: bool = False,
    ) -> list[dict[str, float]]:
        """Train by PCD-``k`` with plain SGD; returns one record per epoch.

        Args:
            data: (N, n_visible) in ``[0, 1]``.
            epochs: passes over the shuffled data.
            batch_size: data rows per update; also the number of persistent chains.
            lr: learning rate of ``θ ← θ + lr (⟨∂(−E)/∂θ⟩_data − ⟨∂(−E)/∂θ⟩_model)``.
            k: Gibbs sweeps of the persistent chains per update.
            seed: root of the shuffles, binarisation and Gibbs draws
                (``derive_seed(seed, "rbm", epoch)``).
            weight_decay: L2 penalty on ``W`` (``W ← W − lr · weight_decay · W``).
            binarize: draw ``v ~ Bernoulli(data)`` per batch (stochastic binarisation,
                Salakhutdinov & Murray 2008); otherwise grey values are used as ``v``.
        The positive phase uses ``p(h | v)`` instead of a sample (Rao–Blackwellised). The
        chains start from uniform random visibles. Records hold ``epoch`` and
        ``reconstruction_error`` (mean over the epoch's batches, before each update).
        """
        if data.ndim != 2 or data.shape[1] != self.n_visible:
            raise ValueError(f"data has shape {tuple(data.shape)}; expected (N, {self.n_visible})")
        if len(data) == 0:
            raise ValueError("data is empty")
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("k", k)):
            if value < 1:
                raise ValueError(f"{name}={value}: must be >= 1")
        if not lr > 0:
            raise ValueError(f"lr={lr}: must be > 0")
        w = self.weight
        data = data.to(w.device, w.dtype)
        chain_gen = torch.Generator(device=w.device).manual_seed(derive_seed(seed, "rbm", "chains"))
        chains = _bernoulli(
            torch.full((batch_size, self.n_visible), 0.5, device=w.device, dtype=w.dtype),
            chain_gen,
        )
        history: list[dict[str, float]] = []
        with progress_bar(progress) as bar:
            task = bar.add_task("training RBM (PCD)", total=epochs)
            for epoch in range(epochs):
                gen = torch.Generator(device=w.device).manual_seed(derive_seed(seed, "rbm", epoch))
                order = torch.randperm(len(data), generator=gen, device=w.device)
                errors: list[float] = []
                for start in range(0, len(data), batch_size):
                    v = data[order[start : start + batch_size]]
                    if binarize:
                        v = _bernoulli(v, gen)
                    errors.append(float(self.reconstruction_error(v)))
                    h_data = self.hidden_probabilities(v)
                    for _ in range(k):
                        chains, _ = self.gibbs_step(chains, gen)
                    h_model = self.hidden_probabilities(chains)
                    n, m = len(v), len(chains)
                    grad_w = v.T @ h_data / n - chains.T @ h_model / m
                    w.add_(lr * (grad_w - weight_decay * w))
                    self.visible_bias.add_(lr * (v.mean(0) - chains.mean(0)))
                    self.hidden_bias.add_(lr * (h_data.mean(0) - h_model.mean(0)))
                record = {"epoch": float(epoch), "reconstruction_error": sum(errors) / len(errors)}
                if not math.isfinite(record["reconstruction_error"]):
                    raise FloatingPointError(
                        f"RBM training diverged at epoch {epoch}; lower lr (lr={lr})"
                    )
                history.append(record)
                bar.advance(task)
        return history


class RBMGenerator:
    """Images from a trained :class:`BernoulliRBM` by block Gibbs sampling.

    ``sample`` starts ``n`` independent chains from uniform random visibles, runs
    ``gibbs_steps`` sweeps and returns the last sweep's mean-field visibles
    ``p(v = 1 | h)`` (the standard way to show RBM samples: less salt-and-pepper noise
    than the binary ``v``, same distribution in expectation), reshaped to ``image_shape``.
    """

    def __init__(self, rbm: BernoulliRBM, image_shape: Sequence[int]) -> None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or math.prod(shape) != rbm.n_visible:
            raise ValueError(
                f"image_shape={image_shape!r} must be (C, H, W) with C·H·W = n_visible "
                f"= {rbm.n_visible}"
            )
        self.rbm = rbm
        self.image_shape: tuple[int, int, int] = shape  # type: ignore[assignment]

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, gibbs_steps: int = 1000) -> torch.Tensor:
        """``n`` images (n, C, H, W) in ``[0, 1]`` after ``gibbs_steps`` Gibbs sweeps."""
        if n < 0 or gibbs_steps < 1:
            raise ValueError(f"n={n}, gibbs_steps={gibbs_steps}: need n >= 0, gibbs_steps >= 1")
        w = self.rbm.weight
        gen = torch.Generator(device=w.device).manual_seed(seed)
        v = _bernoulli(
            torch.full((n, self.rbm.n_visible), 0.5, device=w.device, dtype=w.dtype), gen
        )
        p_v = v
        for _ in range(gibbs_steps):
            v, p_v = self.rbm.gibbs_step(v, gen)
        return p_v.cpu().view(n, *self.image_shape)
