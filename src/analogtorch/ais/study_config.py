"""The schema of an AIS study config (``experiments/ais/*.yaml``): every key typed and
range-checked, unknown keys refused, and every model entry built once (its options are
the constructor's arguments) before anything trains."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..hardware.errors import validated
from ..hardware.profile import HardwareProfile
from ..hardware.random import Seeds
from .rbm import BernoulliRBM
from .wgan import WGANConfig

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
# RBM options: its size, its sampler and the arguments of BernoulliRBM.fit a study may set.
_FIT_FIXED = ("self", "data", "seed", "progress")
RBM_OPTIONS = (
    "n_hidden",
    "gibbs_steps",
    *(name for name in inspect.signature(BernoulliRBM.fit).parameters if name not in _FIT_FIXED),
)


class CriticConfig(BaseModel):
    """The digital WGAN critic (:class:`analogtorch.ais.critic.ConvCritic`)."""

    model_config = _STRICT

    width: int = Field(32, ge=1, le=4096)
    n_downsample: int = Field(3, ge=0, le=10)


class FIDConfig(BaseModel):
    model_config = _STRICT

    n_samples: int = Field(5000, ge=2, le=1_000_000)


class ModelEntry(BaseModel):
    """One generator: an AIS (``oscillator``/``ising``, ``options`` its constructor's
    arguments), the equal-parameter digital ``mlp`` (``match`` names the AIS entry it is
    sized to, ``latent_dim`` its input) or the ``rbm`` baseline (``options``: RBM_OPTIONS)."""

    model_config = _STRICT

    kind: Literal["oscillator", "ising", "mlp", "rbm"]
    label: str | None = Field(None, min_length=1)
    seeds: Seeds | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    match: str | None = None
    latent_dim: int = Field(64, ge=1, le=100_000)
    # this entry's changes to the study's ``wgan`` settings (e.g. ``lr_g``); omitted from
    # the completed config while unset, so older configs keep their fingerprints
    wgan: dict[str, Any] | None = None


class AISStudyConfig(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    kind: Literal["ais"] = "ais"
    description: str = ""
    dataset: Literal["mnist", "fashion-mnist", "cifar10"] = "mnist"
    image_size: int = Field(14, ge=4, le=128)
    n_train: int | None = Field(None, ge=1)
    energy_profile: str = "pcm"
    wgan: WGANConfig = Field(default_factory=WGANConfig)
    critic: CriticConfig = Field(default_factory=CriticConfig)
    fid: FIDConfig = Field(default_factory=FIDConfig)
    models: list[ModelEntry] = Field(min_length=1)
    seeds: Seeds = [0]


def validate_ais(data: Any, source: str) -> dict[str, Any]:
    """``data`` checked against :class:`AISStudyConfig`, defaults filled in, each entry's
    ``label`` (default: its kind) and ``seeds`` (default: the study's) resolved."""
    wgan = data.get("wgan") if isinstance(data, dict) else None
    if isinstance(wgan, dict) and "seed" in wgan:
        raise ValueError(f"{source}: wgan.seed: the study's seeds: list sets every run's seed")
    config = validated(AISStudyConfig, data, source, "AIS study config")
    for index, entry in enumerate(config["models"]):
        entry["label"] = entry["label"] or entry["kind"]
        entry["seeds"] = entry["seeds"] or config["seeds"]
        if entry["wgan"] is None:
            del entry["wgan"]
        else:
            where = f"{source}: models.{index}.wgan"
            if "seed" in entry["wgan"]:
                raise ValueError(f"{where}.seed: the study's seeds: list sets every run's seed")
            if entry["kind"] == "rbm":
                raise ValueError(f"{where}: the RBM is not trained as a WGAN")
            validated(WGANConfig, {**config["wgan"], **entry["wgan"]}, where, "WGAN settings")
    HardwareProfile.from_spec(config["energy_profile"])
    return config
