"""WGAN-GP training of an image generator (Gulrajani et al. 2017, arXiv:1704.00028).

The critic ``D`` estimates the Wasserstein-1 distance between data ``P_r`` and generator
``P_g`` (Arjovsky et al. 2017, Kantorovich–Rubinstein duality); the 1-Lipschitz constraint
is enforced softly by the gradient penalty on random interpolates ``x̂``:

    L_D = E_{x̃~P_g}[D(x̃)] − E_{x~P_r}[D(x)] + λ E_{x̂}[(‖∇_x̂ D(x̂)‖₂ − 1)²],
    x̂ = ε x + (1 − ε) x̃,   ε ~ U[0, 1] per sample,
    L_G = −E_{z}[D(G(z))].

Each generator update follows ``n_critic`` critic updates (Algorithm 1 of the paper:
λ = 10, n_critic = 5, Adam with α = 1e-4, β₁ = 0, β₂ = 0.9). The generator is only ever
trained through the critic: no trajectory matching.

Determinism: everything random in generator step ``t`` (real batches, latents, ε) is drawn
from a CPU ``torch.Generator`` seeded with ``derive_seed(seed, "wgan", t)``, so a run
resumed from the checkpoint of step ``k`` continues exactly as the uninterrupted run would.
Noise inside the generator's dynamics is the generator's own; analog layers (if any) are
re-seeded from ``(seed, t)`` too.

Divergence: a non-finite loss or gradient stops training with
:class:`~analogtorch.train.fit.TrainingDivergedError` naming the step; the bad update is not
applied and ``checkpoint.pt`` / ``history.json`` stay the last ones written (a finished
step). The modules in memory may already hold the failing step's earlier critic updates:
reload the checkpoint rather than reuse them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..devices import module_device
from ..figures import pyplot, save_figure
from ..files import write_json
from ..hardware.random import Seed, derive_seed, draw_like, seed_noise
from ..progress import progress_bar
from ..train.checkpoint import write_checkpoint
from ..train.fit import TrainingDivergedError
from .generator import ImageGenerator

GeneratorStepCallback = Callable[[ImageGenerator, int], None]
"""``callback(gen, step)`` after generator update ``step`` (1-based), e.g. a projection."""

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
HISTORY_KEYS = (
    "step",
    "critic_loss",
    "wasserstein",
    "gradient_penalty",
    "generator_loss",
    "seconds",
)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """``E[(‖∇_x̂ D(x̂)‖₂ − 1)²]`` with ``x̂ = ε real + (1 − ε) fake``, ``ε ~ U[0, 1]`` per sample.

    Without the weight λ (Gulrajani et al. 2017, eq. 3). ``ε`` is drawn from ``generator``;
    the result is differentiable in the critic's parameters (``create_graph=True``) and
    not in ``fake`` (it is detached).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must match")
    shape = (len(real),) + (1,) * (real.ndim - 1)
    eps = draw_like("uniform", shape, generator, real)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class WGANConfig(BaseModel):
    """Settings of :func:`train_wgan`.

    Defaults follow Algorithm 1 of Gulrajani et al. 2017: ``n_critic = 5``, ``λ = 10``,
    Adam ``lr = 1e-4``, ``betas = (0, 0.9)`` (their released code uses ``(0.5, 0.9)`` for
    some experiments; either is accepted).

    Args:
        steps: generator updates in total (a resumed run continues up to this number).
        batch_size: real and fake images per critic / generator update.
        n_critic: critic updates per generator update.
        gp_weight: λ, the weight of the gradient penalty.
        lr_g, lr_d: Adam learning rates of generator and critic.
        betas: Adam ``(β₁, β₂)`` of both optimisers.
        seed: root of every seed (see the module docstring).
        sample_every: write a sample grid every this many steps (and at the end).
        checkpoint_every: write ``checkpoint.pt`` every this many steps (and at the end).
        grid_size: the grid shows ``grid_size × grid_size`` images of fixed latents.
        log_every: append a history record every this many steps (and at the end).
        clip_grad: clip each network's gradient norm to this (``None``: no clipping).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(10_000, ge=1)
    batch_size: int = Field(64, ge=1)
    n_critic: int = Field(5, ge=1)
    gp_weight: float = Field(10.0, ge=0)
    lr_g: float = Field(1e-4, gt=0, le=10)
    lr_d: float = Field(1e-4, gt=0, le=10)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.0,
        0.9,
    )
    seed: Seed = 0
    sample_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    grid_size: int = Field(8, ge=1)
    log_every: int = Field(50, ge=1)
    clip_grad: float | None = Field(None, gt=0)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Tile ``images`` (n, C, H, W) in ``[0, 1]`` into rows of ``nrow`` and save a PNG.

    One-channel images are drawn in grey, three-channel ones in colour; a one-pixel gap
    separates the tiles. Returns the path written.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images has shape {tuple(images.shape)}; expected (n, 1 or 3, H, W)")
    if nrow < 1:
        raise ValueError(f"nrow={nrow}: must be >= 1")
    n, c, h, w = images.shape
    ncol = max(1, math.ceil(n / nrow))
    canvas = torch.ones(c, ncol * (h + 1) - 1, nrow * (w + 1) - 1)
    pixels = images.detach().float().cpu().clamp(0, 1)
    for k in range(n):
        row, col = divmod(k, nrow)
        canvas[:, row * (h + 1) : row * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = pixels[k]
    plt = pyplot()
    size = 0.5 + 0.12 * max(canvas.shape[1:])
    fig, ax = plt.subplots(
        figsize=(
            size * canvas.shape[2] / max(canvas.shape[1:]),
            size * canvas.shape[1] / max(canvas.shape[1:]),
        )
    )
    if c == 1:
        ax.imshow(canvas[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    return save_figure(fig, path)


def _parameters(module: Any) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _check_finite(value: float, what: str, step: int, detail: str) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"WGAN-GP: {what} is {value} at generator step {step} ({detail}); the update was "
            f"not applied and {CHECKPOINT_NAME} keeps the last good step. Lower lr_g / lr_d, "
            "raise gp_weight, or set clip_grad"
        )


def _update(
    loss: torch.Tensor,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    clip_grad: float | None,
    what: str,
    step: int,
    detail: str,
) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with_grad = [p for p in params if p.grad is not None]
    if with_grad:
        limit = clip_grad if clip_grad is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(with_grad, limit)
        _check_finite(float(norm), f"{what} gradient norm", step, detail)
    optimizer.step()


def _fixed_grid(gen: ImageGenerator, latent: torch.Tensor) -> torch.Tensor:
    was_training = getattr(gen, "training", None)
    if isinstance(gen, nn.Module):
        gen.eval()
    try:
        with torch.no_grad():
            return gen(latent).detach().float().cpu()
    finally:
        if isinstance(gen, nn.Module) and was_training is not None:
            gen.train(was_training)


def train_wgan(
    gen: ImageGenerator,
    critic: nn.Module,
    data: torch.Tensor,
    config: WGANConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    callbacks: Sequence[GeneratorStepCallback | object] | None = None,
) -> list[dict[str, float]]:
    """Train ``gen`` against ``critic`` on ``data`` (N, C, H, W) in ``[0, 1]`` with WGAN-GP.

    ``gen`` must be an ``nn.Module`` following :class:`ImageGenerator` (its ``state_dict``
    goes into the checkpoint). Real batches are drawn uniformly with replacement from
    ``data`` (kept on its own device; each batch is moved to the critic's device).

    Writes into ``out_dir``:
        ``checkpoint.pt``: generator, critic, both Adam states, ``step``, ``history`` and
        the config, atomically, every ``checkpoint_every`` steps and at the end;
        ``samples/step_000500.png``: the generator on fixed latents every ``sample_every``
        steps (and at step 0 of a fresh run, and at the end);
        ``history.json``: records with :data:`HISTORY_KEYS` every ``log_every`` steps
        (critic values averaged over that step's ``n_critic`` updates; ``wasserstein`` is
        ``E[D(real)] − E[D(fake)]``; ``seconds`` is wall time since the run began,
        resumed segments included).
    With ``resume=True`` an existing ``checkpoint.pt`` is loaded and training continues
    after its step (``seed``, ``batch_size``, ``n_critic`` must match). ``callbacks``: plain
    callables ``callback(gen, step)`` or objects with ``after_generator_step(gen, step)``,
    called after every generator update. Returns the history.

    Raises:
        TrainingDivergedError: at the first non-finite loss or gradient norm.
    """
    if not isinstance(gen, nn.Module):
        raise TypeError(f"gen is a {type(gen).__name__}; train_wgan needs an nn.Module")
    if data.ndim != 4 or tuple(data.shape[1:]) != tuple(gen.image_shape):
        raise ValueError(
            f"data has shape {tuple(data.shape)}; expected (N, *{tuple(gen.image_shape)})"
        )
    if len(data) == 0:
        raise ValueError("data is empty")
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    history_path = out_dir / HISTORY_NAME
    hooks = list(callbacks or ())
    device = module_device(critic)
    params_g, params_d = _parameters(gen), _parameters(critic)
    if not params_g or not params_d:
        raise ValueError("generator and critic must both have trainable parameters")
    opt_g = torch.optim.Adam(params_g, lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(params_d, lr=config.lr_d, betas=config.betas)

    history: list[dict[str, float]] = []
    first = 0
    seconds_before = 0.0
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        for key in ("seed", "batch_size", "n_critic"):
            if state["config"][key] != getattr(config, key):
                raise ValueError(
                    f"{checkpoint_path} was written with {key}={state['config'][key]!r}, the "
                    f"config has {getattr(config, key)!r}; use the same value or resume=False"
                )
        gen.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_generator"])
        opt_d.load_state_dict(state["opt_critic"])
        history = [dict(r) for r in state["history"]]
        first = int(state["step"])
        seconds_before = float(state["seconds"])
    start_time = time.perf_counter()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - start_time

    def save_checkpoint(step: int) -> None:
        write_checkpoint(
            checkpoint_path,
            {
                "step": step,
                "generator": gen.state_dict(),
                "critic": critic.state_dict(),
                "opt_generator": opt_g.state_dict(),
                "opt_critic": opt_d.state_dict(),
                "history": history,
                "seconds": elapsed(),
                "config": config.model_dump(mode="json"),
            },
        )
        write_json(history_path, history)

    grid_latent = gen.sample_latent(
        config.grid_size**2, torch.Generator().manual_seed(derive_seed(config.seed, "grid"))
    )

    def save_samples(step: int) -> None:
        images = _fixed_grid(gen, grid_latent)
        save_grid(images, out_dir / "samples" / f"step_{step:06d}.png", nrow=config.grid_size)

    out_dir.mkdir(parents=True, exist_ok=True)
    if first == 0:
        save_samples(0)
    gen.train()
    critic.train()
    batch = config.batch_size
    with progress_bar(progress) as bar:
        task = bar.add_task("training WGAN-GP", total=config.steps, completed=first)
        for step in range(first + 1, config.steps + 1):
            rng = torch.Generator().manual_seed(derive_seed(config.seed, "wgan", step))
            seed_noise(gen, derive_seed(config.seed, "noise", step))  # an AIS's noise too
            sums = {"critic_loss": 0.0, "wasserstein": 0.0, "gradient_penalty": 0.0}
            for it in range(config.n_critic):
                index = torch.randint(len(data), (batch,), generator=rng)
                real = data[index.to(data.device)].to(device)
                z = gen.sample_latent(batch, rng).to(device)
                with torch.no_grad():
                    fake = gen(z)
                # one pass over both halves: the critic has no batch-coupled layers
                scores = critic(torch.cat([real, fake]))
                w_estimate = scores[:batch].mean() - scores[batch:].mean()
                penalty = gradient_penalty(critic, real, fake, rng)
                loss_d = -w_estimate + config.gp_weight * penalty
                value = float(loss_d.detach())
                _check_finite(value, "critic loss", step, f"critic update {it}")
                _update(loss_d, params_d, opt_d, config.clip_grad, "critic", step, f"update {it}")
                sums["critic_loss"] += value
                sums["wasserstein"] += float(w_estimate.detach())
                sums["gradient_penalty"] += float(penalty.detach())
            for p in params_d:
                p.requires_grad_(False)  # the generator step needs no critic gradients
            try:
                z = gen.sample_latent(batch, rng).to(device)
                loss_g = -critic(gen(z)).mean()
                value_g = float(loss_g.detach())
                _check_finite(value_g, "generator loss", step, "generator update")
                _update(loss_g, params_g, opt_g, config.clip_grad, "generator", step, "update")
            finally:
                for p in params_d:
                    p.requires_grad_(True)
            for hook in hooks:
                method = getattr(hook, "after_generator_step", hook)
                method(gen, step)
            if step % config.log_every == 0 or step == config.steps:
                record = {"step": float(step)}
                record.update({k: v / config.n_critic for k, v in sums.items()})
                record["generator_loss"] = value_g
                record["seconds"] = elapsed()
                history.append(record)
            if step % config.sample_every == 0 or step == config.steps:
                save_samples(step)
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_checkpoint(step)
            bar.advance(task)
    if first >= config.steps:
        write_json(history_path, history)
    gen.eval()
    critic.eval()
    return history
