"""`Chip`: one sampled, frozen instance of a hardware profile.

Programming a layer draws, once per chip and from the chip's seed (independent of the
order in which layers are programmed):

* programmed weights ``w_p = w_hat + sigma_p(w_hat) z`` (``noise.prog_noise_variance``),
  split into a differential pair ``G+ = max(w_p, 0)``, ``G- = max(-w_p, 0)``;
* device mismatch ``G <- G (1 + mismatch_std z)`` (clipped at 0);
* stuck devices: a fraction ``stuck_rate`` fixed at ``g_max`` (``stuck_on_fraction`` of them)
  or at 0;
* per-device drift exponents ``nu``.

Reading the chip at time ``t`` after programming uses
``G(t) = G (max(t, t0)/t0)^(-nu) (1 + mu(t))``, the crossbar circuit (crosstalk, IR drop),
optional global drift compensation (outputs rescaled by ``sum|W(t0) 1| / sum|W(t) 1|``,
measured with an all-ones calibration input as in Joshi et al. 2020), and fresh read noise
``sigma_r(t)`` on every read, drawn from a generator seeded by (chip seed, time), so the
same chip read at the same time gives identical outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .circuit import effective_weights
from .mapping import normalized_weights, split_differential, weight_scale
from .noise import (
    drift_factor,
    noise_mean_at,
    prog_noise_variance,
    read_noise_std_at,
    sample_drift_exponents,
)
from .profile import HardwareProfile
from .random import NoiseSource, derive_seed
from .surrogate import ChipRead
from .tiling import RowTiling


@dataclass(frozen=True)
class ProgrammedLayer:
    """Device state of one layer on one chip (normalised conductances, CPU-drawn)."""

    g_plus: torch.Tensor
    g_minus: torch.Tensor
    nu_plus: torch.Tensor
    nu_minus: torch.Tensor
    scale: torch.Tensor
    tiling: RowTiling


def program_weights(
    weight: torch.Tensor, tiling: RowTiling, profile: HardwareProfile, seed: int
) -> ProgrammedLayer:
    """Program one weight tensor (out, ...) onto a chip drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    w = weight.detach().to("cpu", torch.float32)
    scale = weight_scale(w, profile)
    w_hat = normalized_weights(w, scale, profile)
    w_prog = w_hat + prog_noise_variance(profile, w_hat).sqrt() * torch.randn(
        w_hat.shape, generator=gen
    )
    pair = []
    for g in split_differential(w_prog):
        if profile.mismatch_std > 0:
            g = (g * (1 + profile.mismatch_std * torch.randn(g.shape, generator=gen))).clamp_min(0)
        if profile.stuck_rate > 0:
            stuck = torch.rand(g.shape, generator=gen) < profile.stuck_rate
            stuck_on = torch.rand(g.shape, generator=gen) < profile.stuck_on_fraction
            g = torch.where(stuck, stuck_on.to(g.dtype), g)
        pair.append(g)
    nus = [sample_drift_exponents(profile, w_hat.shape, gen) for _ in range(2)]
    device, dtype = weight.device, weight.dtype
    return ProgrammedLayer(*(t.to(device, dtype) for t in (*pair, *nus, scale)), tiling=tiling)


def read_state(
    layer: ProgrammedLayer, profile: HardwareProfile, time_s: float, source: NoiseSource
) -> ChipRead:
    """The chip's effective weights and read noise for one layer at ``time_s`` seconds."""
    t0 = profile.drift_t0_seconds
    shift = 1.0 + noise_mean_at(profile, time_s)
    g_plus = layer.g_plus * drift_factor(layer.nu_plus, time_s, t0) * shift
    g_minus = layer.g_minus * drift_factor(layer.nu_minus, time_s, t0) * shift
    w_eff = effective_weights(g_plus, g_minus, layer.tiling, profile)
    scale = layer.scale
    if profile.drift_compensation:
        reference = effective_weights(layer.g_plus, layer.g_minus, layer.tiling, profile)
        drifted = w_eff.sum(dim=1).abs().sum()
        scale = scale * (reference.sum(dim=1).abs().sum() / drifted.clamp_min(1e-30))
    return ChipRead(profile, w_eff, scale, read_noise_std_at(profile, time_s), source)


def _profiles_apart(profiles: set[HardwareProfile]) -> str:
    """Names that tell ``profiles`` apart, or the fields they differ in."""
    names = sorted({p.name for p in profiles})
    if len(names) == len(profiles):
        return ", ".join(names)
    dumps = [p.model_dump(exclude={"name", "description"}) for p in profiles]
    differ = sorted(k for k in dumps[0] if len({repr(d[k]) for d in dumps}) > 1)
    return f"{', '.join(names)}; differing in {', '.join(differ)}"


class Chip:
    """One device instance of ``profile``, reproducible from ``seed``.

    Example::

        chip = Chip(HardwareProfile.preset("pcm"), seed=3)
        with chip.deploy(model, time_s=3600.0):   # one hour after programming
            logits = model(x)

    Every analog layer is programmed and read at ``profile`` (the chip's hardware overrides
    the profile a layer was trained on), except the layers named in ``layer_profiles``,
    which get their own: a model converted with per-layer rules runs on
    ``Chip.for_model(model, seed)``, each layer at its own profile. Deploying a model whose
    layers were trained on different profiles onto a one-profile chip is refused, since it
    would silently erase the per-layer plan.

    Programming is cached per layer (redone when the layer's weights differ from those
    programmed), so reading the same chip at several times costs one programming per layer.
    """

    def __init__(
        self,
        profile: HardwareProfile,
        seed: int,
        *,
        layer_profiles: Mapping[str, HardwareProfile] | None = None,
    ) -> None:
        if not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed={seed!r}: a chip seed must be an int")
        for name, layer_profile in (layer_profiles or {}).items():
            if not isinstance(layer_profile, HardwareProfile):
                raise TypeError(
                    f"layer_profiles[{name!r}] must be a HardwareProfile, got "
                    f"{type(layer_profile).__name__}"
                )
        self.profile = profile
        self.seed = seed
        self.layer_profiles = dict(layer_profiles) if layer_profiles is not None else None
        self._programmed: dict[str, tuple[torch.Tensor, ProgrammedLayer]] = {}

    @classmethod
    def for_model(cls, model: nn.Module, seed: int, noise_scale: float = 1.0) -> Chip:
        """A chip that programs and reads every analog layer of ``model`` at the layer's own
        profile, every noise amplitude times ``noise_scale`` (``HardwareProfile.scale_noise``)."""
        from ..nn.base import analog_layers

        layers = analog_layers(model)
        if not layers:
            raise ValueError("model has no analog layers: convert it with analogtorch.convert")
        profiles = {n: layer.profile.scale_noise(noise_scale) for n, layer in layers.items()}
        return cls(next(iter(profiles.values())), seed, layer_profiles=profiles)

    def __repr__(self) -> str:
        per_layer = ", per-layer profiles" if self.layer_profiles else ""
        return f"Chip(profile={self.profile.name!r}, seed={self.seed}{per_layer})"

    def profile_of(self, name: str) -> HardwareProfile:
        """The profile the layer called ``name`` is programmed and read at."""
        if self.layer_profiles is None:
            return self.profile
        return self.layer_profiles.get(name, self.profile)

    @classmethod
    def from_conductances(cls, path: str | Path, profile: HardwareProfile | None = None) -> Chip:
        """The chip whose programmed state is the conductance set in the directory ``path``
        (measured, or written by :meth:`export`): a :class:`~.conductances.MeasuredChip`, read
        through ``profile`` (default the set's own). Format: :mod:`.conductances`."""
        from .conductances import read_conductances

        return read_conductances(path, profile)

    def export(self, model: nn.Module, path: str | Path) -> Path:
        """Write the G+, G-, drift exponents and row scales of ``model``'s analog layers on
        this chip to the directory ``path`` (format: :mod:`.conductances`); returns it."""
        from .conductances import export_conductances

        return export_conductances(self, model, path)

    def program_layer(self, name: str, weight: torch.Tensor, tiling: RowTiling) -> ProgrammedLayer:
        """Programmed state of the layer called ``name`` (drawn once, then cached)."""
        cached = self._programmed.get(name)
        stale = (
            cached is None
            or (cached[0].shape, cached[0].device) != (weight.shape, weight.device)
            or not torch.equal(cached[0], weight)
        )
        if stale:
            programmed = program_weights(
                weight, tiling, self.profile_of(name), derive_seed(self.seed, "program", name)
            )
            cached = (weight.detach().clone(), programmed)
            self._programmed[name] = cached
        return cached[1]

    @contextmanager
    def deploy(self, model: nn.Module, time_s: float = 0.0) -> Iterator[nn.Module]:
        """Run ``model``'s analog layers on this chip, ``time_s`` seconds after programming."""
        from ..nn.base import analog_layers

        layers = analog_layers(model)
        if not layers:
            raise ValueError("model has no analog layers: convert it with analogtorch.convert")
        if self.layer_profiles is None:
            trained = {layer.profile for layer in layers.values()}
            if len(trained) > 1:
                raise ValueError(
                    f"the model's analog layers run on {len(trained)} different profiles "
                    f"({_profiles_apart(trained)}); this chip would read them "
                    "all at its one profile: use Chip.for_model(model, seed) (each layer at its "
                    "own profile) or Chip(profile, seed, layer_profiles={name: profile, ...})"
                )
        device = next(iter(layers.values())).weight.device
        source = NoiseSource(derive_seed(self.seed, "read", float(time_s)), device)
        try:
            with torch.no_grad():
                for name, layer in layers.items():
                    profile = self.profile_of(name)
                    programmed = self.program_layer(
                        name, layer.crossbar_weight(), layer.row_tiling(profile)
                    )
                    layer.chip_read = read_state(programmed, profile, time_s, source)
            yield model
        finally:
            for layer in layers.values():
                layer.chip_read = None
