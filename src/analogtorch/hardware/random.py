"""Seeds and reproducible draws: `derive_seed`, `seed_noise`, `NoiseSource`, and the
config types `Seed` / `Seeds`.

Every random draw of the toolkit comes from a generator seeded explicitly. Seeds of parts
are derived from a root seed and names (:func:`derive_seed`), and every module that draws
random numbers has ``reseed(seed)``, which :func:`seed_noise` calls for all of a model's
modules: one call makes a whole model's noise reproducible (the ``Trainer`` makes it at
every epoch, so a resumed run draws what the uninterrupted run drew). Modules that can also
save where their streams stand (``noise_state()`` / ``load_noise_state(state)``, protocol
:class:`SavableNoise`) let :func:`noise_state` and :func:`load_noise_state` capture and
restore a whole model's streams mid-sequence (the ``Trainer``'s mid-epoch checkpoints).

`NoiseSource`: reproducible Gaussian (and uniform) draws for the hardware model, fast on CPU.

PyTorch's CPU generator (Mersenne Twister) fills a tensor serially, about 5 ns per
normal on this class of machine: for the 10^6 draws of one training step of a
784-1024-1024 MLP that is a sixth of the step. A ``NoiseSource`` owns ``n_streams``
independent generators seeded from one seed; a large CPU draw is cut into that many
fixed chunks, each filled from its own stream on a thread pool (``normal_`` releases the
GIL), so the result depends only on the seed and the shape, never on the thread count.
Small draws and non-CPU devices use stream 0 alone (GPU generators are already parallel).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal, Protocol, runtime_checkable

import torch
from pydantic import AfterValidator, Field
from torch import nn


def _distinct(seeds: list[int]) -> list[int]:
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds must be distinct (a repeated seed repeats its cells)")
    return seeds


# A seed in a config: 0 ... 2**32 - 1 (room for the offsets added to it, within every
# generator's range), and a non-empty list of distinct ones.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Seeds = Annotated[list[Seed], Field(min_length=1), AfterValidator(_distinct)]

_PARALLEL_MIN_NUMEL = 1 << 17
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(
            max_workers=max(torch.get_num_threads(), 1), thread_name_prefix="analogtorch-rng"
        )
    return _POOL


class NoiseSource:
    """Independent random streams (Gaussian, uniform) derived from one seed, on one device."""

    def __init__(self, seed: int, device: torch.device | str = "cpu", n_streams: int = 4) -> None:
        if n_streams < 1:
            raise ValueError(f"n_streams={n_streams}: need at least one stream")
        self.device = torch.device(device)
        self.seed = int(seed)
        self.streams = []
        for k in range(n_streams if self.device.type == "cpu" else 1):
            gen = torch.Generator(device=self.device)
            gen.manual_seed((self.seed + 0x9E3779B97F4A7C15 * k) % (1 << 63))
            self.streams.append(gen)

    def get_state(self) -> list[torch.Tensor]:
        """Where each stream stands (CPU byte tensors, one per stream)."""
        return [gen.get_state() for gen in self.streams]

    def set_state(self, state: list[torch.Tensor]) -> None:
        """Continue every stream from ``state`` (from :meth:`get_state` of a like source)."""
        if len(state) != len(self.streams):
            raise ValueError(
                f"state of {len(state)} streams for a NoiseSource of {len(self.streams)}: "
                "restore a state saved from a source on the same device type"
            )
        for gen, value in zip(self.streams, state, strict=True):
            gen.set_state(value)

    def normal(
        self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Standard normal samples of ``shape``."""
        return self._fill(shape, dtype, torch.Tensor.normal_)

    def uniform(
        self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Samples of ``U[0, 1)`` of ``shape``."""
        return self._fill(shape, dtype, torch.Tensor.uniform_)

    def _fill(
        self,
        shape: torch.Size | tuple[int, ...],
        dtype: torch.dtype,
        fill: Callable[..., torch.Tensor],
    ) -> torch.Tensor:
        """A new tensor filled in place by ``fill(chunk, generator=stream)``, chunk by chunk."""
        out = torch.empty(shape, dtype=dtype, device=self.device)
        n = out.numel()
        if len(self.streams) == 1 or n < _PARALLEL_MIN_NUMEL:
            return fill(out, generator=self.streams[0])
        chunks = out.view(-1).tensor_split(len(self.streams))
        jobs = [
            _pool().submit(fill, c, generator=g) for c, g in zip(chunks, self.streams, strict=True)
        ]
        for job in jobs:
            job.result()
        return out


def draw_like(
    kind: Literal["normal", "uniform"],
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """``N(0, 1)`` (``kind="normal"``) or ``U[0, 1)`` (``"uniform"``) draws of ``shape`` in
    ``like``'s dtype, on ``like``'s device. They are drawn on ``generator``'s own device (on
    ``like``'s global stream without one), so a CPU generator gives the same numbers
    whichever device the work runs on."""
    device = generator.device if generator is not None else like.device
    fill = {"normal": torch.randn, "uniform": torch.rand}[kind]
    return fill(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (same on every machine and run)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@runtime_checkable
class Reseedable(Protocol):
    """A module that draws random numbers from streams it can restart."""

    def reseed(self, seed: int) -> None: ...


def seed_noise(model: nn.Module, seed: int) -> nn.Module:
    """Restart every random stream of ``model``: each module with ``reseed`` (analog layers,
    stochastic residual and perturbed layers, noise-injection baselines, analog interaction
    systems) gets ``derive_seed(seed, its qualified name)``. Returns ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, Reseedable):
            module.reseed(derive_seed(seed, name))
    return model


@runtime_checkable
class SavableNoise(Reseedable, Protocol):
    """A :class:`Reseedable` module that can also save and restore where its streams stand.

    ``noise_state()`` returns only tensors, ints, floats, strings, lists and dicts (loadable
    with ``torch.load(..., weights_only=True)``); ``load_noise_state(state)`` continues every
    stream from there, recreating the lazily created ones."""

    def noise_state(self) -> dict[str, object]: ...

    def load_noise_state(self, state: dict[str, object]) -> None: ...


def noise_state(model: nn.Module) -> dict[str, dict[str, object]] | None:
    """Where every random stream of ``model`` stands, by qualified module name; ``None``
    when some module with ``reseed`` cannot save its streams (no :class:`SavableNoise`)."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, Reseedable):
            if not isinstance(module, SavableNoise):
                return None
            state[name] = module.noise_state()
    return state


def load_noise_state(model: nn.Module, state: dict[str, dict[str, object]]) -> nn.Module:
    """Continue every random stream of ``model`` from ``state`` (from :func:`noise_state` of
    a model of the same structure). Returns ``model``."""
    modules = {
        name: module for name, module in model.named_modules() if isinstance(module, Reseedable)
    }
    if set(modules) != set(state):
        raise ValueError(
            f"noise state of modules {sorted(state)} does not match the model's random "
            f"modules {sorted(modules)}: restore it into a model of the same structure"
        )
    for name, module in modules.items():
        if not isinstance(module, SavableNoise):
            raise TypeError(f"module {name!r} ({type(module).__name__}) cannot restore streams")
        module.load_noise_state(state[name])
    return model
