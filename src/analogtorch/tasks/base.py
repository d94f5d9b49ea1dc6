"""The :class:`TaskData` container, the task registry and shared argument checks.

A task is a pair of train/test sets ``(x, y)`` plus the constants that define it (``info``).
Regression tasks are scored by the relative L2 error over the whole set,

    err = ‖P − T‖_F / ‖T‖_F        (dimensionless; 0 is perfect),

classification tasks by the error rate in percent. Generators register themselves in
:data:`TASKS` with :func:`register_task`; :func:`make_task` looks a name up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

TaskKind = Literal["regression", "classification"]
KINDS: tuple[TaskKind, ...] = ("regression", "classification")
OUTPUT_DTYPES = (torch.float32, torch.float64)

TaskFactory = Callable[..., "TaskData"]
TASKS: dict[str, TaskFactory] = {}


@dataclass(frozen=True, eq=False)
class TaskData:
    """Train and test sets of one task.

    ``x_*``: float inputs, shape (N, ...). ``y_*``: float targets (N, ...) for regression, int64
    class indices (N,) for classification. ``info``: the task's constants (matrices, step
    sizes, normalisation statistics), JSON-serialisable scalars, strings and (nested) lists only.
    """

    name: str
    kind: TaskKind
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not a task kind; expected one of {KINDS}")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise TypeError(f"x_{split} and y_{split} must be torch.Tensor")
            if x.ndim < 2 or y.shape[:1] != x.shape[:1]:
                raise ValueError(
                    f"x_{split} must be (N, ...) with N = len(y_{split}); got x_{split} "
                    f"{tuple(x.shape)} and y_{split} {tuple(y.shape)}"
                )
            if not x.is_floating_point():
                raise TypeError(f"x_{split} must be a float tensor, got dtype {x.dtype}")
            if self.kind == "classification" and (y.dtype != torch.int64 or y.ndim != 1):
                raise TypeError(
                    f"y_{split} of a classification task must be int64 of shape (N,); "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if self.kind == "regression" and not y.is_floating_point():
                raise TypeError(f"y_{split} of a regression task must be float, got {y.dtype}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_train {tuple(self.x_train.shape)} and x_test {tuple(self.x_test.shape)} "
                "must have the same feature shape"
            )

    def to(self, device: str | torch.device) -> TaskData:
        """The same task with its four tensors on ``device`` (``self`` when they are there)."""
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        if all(moved[k] is getattr(self, k) for k in moved):
            return self
        return replace(self, **moved)

    @classmethod
    def regression(
        cls, name: str, x: Tensor, y: Tensor, n_train: int, info: dict[str, object]
    ) -> TaskData:
        """A regression task whose first ``n_train`` rows of ``x``, ``y`` are the train set
        and the rest the test set."""
        return cls(name, "regression", x[:n_train], y[:n_train], x[n_train:], y[n_train:], info)

    @property
    def in_features(self) -> int:
        """Number of input features per sample: the product of ``x_train.shape[1:]``."""
        return math.prod(self.x_train.shape[1:])

    @property
    def out_features(self) -> int:
        """Regression: target size per sample. Classification: number of classes."""
        if self.kind == "classification":
            classes = self.info.get("num_classes")
            if isinstance(classes, int):
                return classes
            return int(torch.cat([self.y_train, self.y_test]).max()) + 1
        return math.prod(self.y_train.shape[1:])

    def error(self, prediction: Tensor, target: Tensor) -> float:
        """Error of ``prediction`` against ``target`` over a whole set.

        Regression: ``‖p − t‖ / ‖t‖`` (Frobenius norms over all samples, computed in float64).
        Classification: percentage of wrong labels; ``prediction`` is either (N,) labels or
        (N, C) scores (argmax is taken).
        """
        if self.kind == "regression":
            if prediction.shape != target.shape:
                raise ValueError(
                    f"prediction shape {tuple(prediction.shape)} must equal target shape "
                    f"{tuple(target.shape)}"
                )
            p, t = prediction.detach().double(), target.detach().double()
            norm = torch.linalg.vector_norm(t)
            if norm == 0:
                raise ValueError("target is all zeros: the relative error is undefined")
            return float(torch.linalg.vector_norm(p - t) / norm)
        labels = prediction.detach()
        if labels.ndim == 2:
            labels = labels.argmax(dim=1)
        if labels.shape != target.shape or target.ndim != 1:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} must be (N,) labels or (N, C) scores "
                f"for target (N,) = {tuple(target.shape)}"
            )
        if target.numel() == 0:
            raise ValueError("target is empty: the error rate is undefined")
        return 100.0 * float((labels.long() != target.long()).double().mean())


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Decorator that adds a generator to :data:`TASKS` under ``name``."""

    def add(factory: TaskFactory) -> TaskFactory:
        if name in TASKS:
            raise ValueError(f"task name={name!r} is already registered")
        TASKS[name] = factory
        return factory

    return add


def make_task(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    **kwargs: object,
) -> TaskData:
    """Build the task registered as ``name``.

    ``n_train`` / ``n_test`` left as None use the generator's defaults (for image tasks: the
    whole split). Other keyword arguments go to the generator unchanged.
    """
    factory = TASKS.get(name)
    if factory is None:
        raise ValueError(f"name={name!r} is not a known task; expected one of {sorted(TASKS)}")
    sizes = {k: v for k, v in (("n_train", n_train), ("n_test", n_test)) if v is not None}
    return factory(**sizes, seed=seed, **kwargs)


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the generators (raise ValueError / TypeError naming the parameter).


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}={value} must be an integer >= {minimum}")
    return value


def check_float(
    name: str,
    value: object,
    *,
    low: float = 0.0,
    high: float = math.inf,
    strict: bool = True,
    closed_high: bool = False,
) -> float:
    """``value`` as a finite float in ``(low, high)``; ``[low, …`` when not ``strict``,
    ``…, high]`` when ``closed_high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a real number, got {type(value).__name__}")
    number = float(value)
    above = number > low if strict else number >= low
    below = number <= high if closed_high else number < high
    if not (math.isfinite(number) and above and below):
        interval = f"{'(' if strict else '['}{low}, {high}{']' if closed_high else ')'}"
        raise ValueError(f"{name}={value} must be a finite number in {interval}")
    return number


def check_dtype(dtype: object) -> torch.dtype:
    """Output dtype of a synthetic task: float32 or float64."""
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {OUTPUT_DTYPES}")
    return dtype  # type: ignore[return-value]


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (checked to be a non-negative int)."""
    return torch.Generator().manual_seed(check_int("seed", seed, minimum=0))


def tolist(tensor: Tensor) -> list:
    """A tensor as nested Python floats (JSON-serialisable, exact for float64)."""
    return tensor.detach().cpu().double().tolist()
