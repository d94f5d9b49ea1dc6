"""The schema of a DEQ study config (``experiments/deq/*.yaml``, ``analogtorch deq train``):
every key typed and range-checked, unknown keys refused, before anything trains."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..hardware.errors import validated
from ..hardware.random import Seed, Seeds
from ..tasks import IMAGE_TASKS, TASKS

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class ConvEncoderConfig(BaseModel):
    """A digital convolutional injection (``conv_encoder.py``): one conv → ReLU → 2×2
    max-pool stage per entry of ``channels``, then a linear map to the core's width."""

    model_config = _STRICT

    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field([32, 64], min_length=1)
    kernel_size: int = Field(3, ge=1, le=15)


class ModelConfig(BaseModel):
    """The hybrid DEQ (``build_hybrid_deq``)."""

    model_config = _STRICT

    width: int = Field(128, ge=1, le=100_000)
    kind: Literal["plain", "pi", "cc"] = "plain"
    # PI-DEQ physics term (``deq/physics.py``: heat, burgers, linear); None: the task's own.
    physics: str | None = None
    # Scale c of the physics term, P = c · (explicit step); its Lipschitz constant must stay
    # below the contraction target.
    coupling: float = Field(0.5, gt=0, lt=1)
    activation: Literal["tanh", "relu", "identity"] = "tanh"
    solver: Literal["anderson", "broyden", "fixed_point"] = "anderson"
    tol: float = Field(1e-3, gt=0, le=1)
    max_iter: int = Field(40, ge=1, le=100_000)
    backward: Literal["implicit", "phantom", "unrolled"] = "implicit"
    contraction: float = Field(0.9, gt=0, le=1)
    digital_bits: int | None = Field(8, ge=2, le=16)
    # The circuit relaxation (arm "relaxation" and the relaxation check): Euler steps per τ
    # and the time budget in τ.
    steps_per_tau: int = Field(10, ge=2, le=10_000)
    max_tau: float = Field(200.0, gt=0, le=1e6)
    # None (omitted from the completed config, so older configs keep their fingerprint):
    # the flat linear encoder; else a digital conv encoder for image tasks.
    encoder: ConvEncoderConfig | None = None


class DAggerConfig(BaseModel):
    """Swing-up controllers trained by DAgger (``tasks/swingup.py``, ``swingup_study.py``):
    the smooth expert's gains (k_E in s/rad, σ in rad), the rounds, the rollouts and states
    each adds; ``train.epochs`` fit the first round, ``epochs_per_round`` each later one."""

    model_config = _STRICT

    rounds: int = Field(5, ge=1, le=1000)
    rollouts: int = Field(64, ge=2, le=100_000)
    samples: int = Field(2048, ge=1, le=10_000_000)
    epochs_per_round: int = Field(5, ge=1, le=100_000)
    energy_gain: float = Field(0.3, gt=0, le=100)
    catch_width: float = Field(0.45, gt=0, le=10)


class HILStageConfig(BaseModel):
    """The curriculum's hardware-in-the-loop stage (arm ``hil``, ``hil_stage.py``): the
    physics-aware model fine-tuned ``steps`` Adam steps at ``lr`` on each ``VirtualChip`` of
    ``chips`` (hidden design ``design_seed``), forward on the chip and backward through the
    twin; ``budget`` caps the chip's input vectors, the twins are refitted every
    ``recalibrate_every`` steps; ``twin``: also the I/O-twin fine-tuning (fitted once)."""

    model_config = _STRICT

    backend: Literal["virtual"] = "virtual"
    chips: Seeds = [0, 1, 2]
    design_seed: Seed = 0
    steps: int = Field(100, ge=1, le=10_000_000)
    lr: float = Field(1e-4, gt=0, le=10)
    budget: int | None = Field(None, ge=1)
    recalibrate_every: int | None = Field(50, ge=1)
    calibration_batches: int = Field(4, ge=1, le=10_000)
    twin_steps: int = Field(200, ge=1, le=100_000)
    twin: bool = True


class TrainConfig(BaseModel):
    model_config = _STRICT

    epochs: int = Field(3, ge=1, le=100_000)
    lr: float = Field(2e-3, gt=0, le=10)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    dagger: DAggerConfig | None = None  # kind: swingup only
    hil: HILStageConfig | None = None  # with the arm "hil" only
    # "cosine": lr decays from ``lr`` to 0 over the epochs (``train/lr_schedule.py``); None
    # (omitted from the completed config): constant ``lr``.
    schedule: Literal["cosine"] | None = None


class EvalConfig(BaseModel):
    model_config = _STRICT

    chips: int = Field(5, ge=1, le=10_000)
    time_s: float = Field(3600.0, ge=0, le=3.2e9)
    # kind: swingup only: closed-loop starts per start set (hanging, uniform).
    starts: int | None = Field(None, ge=1, le=100_000)


class SettingConfig(BaseModel):
    """One hardware setting: weight/DAC/ADC bits and weight noise (None: the profile's)."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    bits: int | None = Field(None, ge=2, le=16)
    noise: float | None = Field(None, ge=0, le=1)


class RegularizerConfig(BaseModel):
    model_config = _STRICT

    sparsity: float = Field(0.0, ge=0, le=1e6)
    jacobian: float = Field(0.0, ge=0, le=1e6)
    precision: float = Field(0.0, ge=0, le=1e6)
    energy: float = Field(0.0, ge=0, le=1e6)


class DEQStudyConfig(BaseModel):
    model_config = _STRICT

    kind: Literal["classification", "physics", "swingup"] = "classification"
    name: str = Field(min_length=1)
    description: str = ""
    task: str | None = None
    tasks: list[str] = Field(default_factory=list)
    n_train: int | None = Field(None, ge=1)
    n_test: int | None = Field(None, ge=1)
    # keyword arguments of the task generator(s) (e.g. ``state_dim`` of ``nonlinear``);
    # every task of the study must accept each of them
    task_options: dict[str, Any] | None = None
    profile: str = "pcm"
    profile_changes: dict[str, Any] = Field(default_factory=dict)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    regularizers: RegularizerConfig = Field(default_factory=RegularizerConfig)
    curriculum: bool = True
    settings: list[SettingConfig] = Field(
        default_factory=lambda: [SettingConfig(name="nominal")], min_length=1
    )
    # "relaxation": physics-aware training with forward="relaxation" (the core settled by the
    # circuit ODE, implicit gradient at the settled state), scored on chips the same way.
    # "explicit": physics-aware training of the DEQ's explicit twin (``explicit.py``: the
    # core applied once to the encoder's state, no equilibrium).
    # "hil": the physics-aware model fine-tuned on VirtualChips (``train.hil``), scored there.
    arms: list[Literal["physics-aware", "standard", "relaxation", "explicit", "hil"]] = Field(
        ["physics-aware", "standard"], min_length=1
    )
    eval: EvalConfig = Field(default_factory=EvalConfig)
    # kind: physics only: one hybrid-on-chips arm per core kind (plain / pi / cc) with the
    # physics-consistency residual, instead of hybrid / digital DEQ / explicit net.
    kinds: list[Literal["plain", "pi", "cc"]] = Field(default_factory=list)
    seeds: Seeds = [0]
    relaxation: bool = True


# Keys added after configs were run: dropped from the completed config while unset, so the
# fingerprint of a config that does not use them stays what it was.
_OMITTED_WHEN_UNSET = {
    "model": ("encoder",),
    "train": ("dagger", "hil", "schedule"),
    "eval": ("starts",),
}


def _check_task_options(config: dict[str, Any], source: str) -> None:
    """Refuse ``task_options`` a task generator of the study does not take (one line)."""
    for name in [config["task"]] if config["task"] else config["tasks"]:
        factory = TASKS.get(name)
        if factory is None:
            continue  # an unknown task name is refused where the task is built
        accepted = set(inspect.signature(factory).parameters) - {"n_train", "n_test", "seed"}
        unknown = sorted(set(config["task_options"]) - accepted)
        if unknown:
            raise ValueError(
                f"{source}: task_options {unknown} are not options of task {name!r}; "
                f"it takes {sorted(accepted)}"
            )
        if name in IMAGE_TASKS:
            continue  # their options are checked where the files are read
        try:  # a two-sample build checks the values (synthetic tasks are cheap to make)
            factory(n_train=1, n_test=1, seed=0, **config["task_options"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: task_options of task {name!r}: {err}") from None


def validate_deq(data: Any, source: str) -> dict[str, Any]:
    """``data`` checked against :class:`DEQStudyConfig`, defaults filled in, as plain data
    (the keys of ``_OMITTED_WHEN_UNSET`` left out while they are None)."""
    config = validated(DEQStudyConfig, data, source, "DEQ study config")
    if config["task_options"] is None:
        del config["task_options"]
    else:
        _check_task_options(config, source)
    for section, keys in _OMITTED_WHEN_UNSET.items():
        for key in keys:
            if config[section][key] is None:
                del config[section][key]
    return config
