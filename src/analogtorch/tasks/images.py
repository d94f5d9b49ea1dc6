"""Image classification tasks: MNIST, Fashion-MNIST, CIFAR-10 and downsampled ImageNet 32×32.

The first three come from :func:`analogtorch.data.load_dataset` (local files only; nothing is
downloaded here). ImageNet-32 is read by :func:`load_imagenet32` from the official npz batches,
which cannot be downloaded automatically: get "Downsampled ImageNet 32x32" from image-net.org
after accepting its terms of access.

Inputs are normalised per channel, ``x = (image − mean_c) / std_c``, with the statistics of the
(subsampled) training set, stored in ``info``; pixels start in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from analogtorch import data as _data
from analogtorch.tasks.base import TaskData, check_int, generator, register_task

IMAGE_TASKS = ("mnist", "fashion-mnist", "cifar10", "imagenet32")
NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "imagenet32": 1000}
IMAGENET32_FILES = {
    "train": tuple(f"train_data_batch_{i}.npz" for i in range(1, 11)),
    "val": ("val_data.npz",),
}
# Folders, inside data_dir, where the batches usually sit ("" is data_dir itself).
_IMAGENET32_SUBDIRS = {
    "train": ("", "imagenet32", "Imagenet32_train_npz", "imagenet32/Imagenet32_train_npz"),
    "val": ("", "imagenet32", "Imagenet32_val_npz", "imagenet32/Imagenet32_val_npz"),
}
_PIXELS = 3 * 32 * 32

PathLike = str | os.PathLike[str]


def _imagenet32_roots(data_dir: PathLike | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    roots = [Path(os.environ["ANALOGTORCH_DATA"])] if os.environ.get("ANALOGTORCH_DATA") else []
    return [*roots, Path.home() / ".cache" / "analogtorch"]


def _imagenet32_paths(
    data_dir: PathLike | None, split: str, batches: Sequence[int] | None
) -> list[Path]:
    """Paths of the requested batch files; FileNotFoundError naming what is missing and where."""
    if split == "test":
        split = "val"
    if split not in IMAGENET32_FILES:
        raise ValueError(f"split={split!r} is not an ImageNet-32 split; expected 'train' or 'val'")
    names = IMAGENET32_FILES[split]
    if batches is not None:
        if split != "train" or not batches or any(b not in range(1, 11) for b in batches):
            raise ValueError(f"batches={batches!r} must be a non-empty subset of 1..10 (train)")
        names = tuple(names[b - 1] for b in batches)
    folders = [
        root / sub for root in _imagenet32_roots(data_dir) for sub in _IMAGENET32_SUBDIRS[split]
    ]
    for folder in dict.fromkeys(folders):
        if all((folder / name).is_file() for name in names):
            return [folder / name for name in names]
    raise FileNotFoundError(
        f"ImageNet-32 {split} files {list(names)} not found in any of "
        f"{[str(f) for f in dict.fromkeys(folders)]}. ImageNet-32 cannot be downloaded "
        "automatically: download 'Downsampled ImageNet 32x32' (npz format) yourself from "
        "https://image-net.org/download-images after accepting its terms of access, and unpack "
        "the batches into data_dir."
    )


def _read_imagenet32(
    data_dir: PathLike | None, split: str, batches: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 3, 32, 32) and int64 0-based labels (N,) of the requested batches."""
    images, labels = [], []
    for path in _imagenet32_paths(data_dir, split, batches):
        with np.load(path, allow_pickle=False) as npz:
            if "data" not in npz or "labels" not in npz:
                raise ValueError(f"{path}: expected arrays 'data' and 'labels', got {npz.files}")
            pixels, label = np.asarray(npz["data"]), np.asarray(npz["labels"]).reshape(-1)
        if pixels.ndim != 2 or pixels.shape[1] != _PIXELS or pixels.dtype != np.uint8:
            raise ValueError(
                f"{path}: 'data' must be uint8 of shape (N, {_PIXELS}), got {pixels.dtype} "
                f"{pixels.shape}"
            )
        if label.shape != (len(pixels),) or not ((label >= 1) & (label <= 1000)).all():
            raise ValueError(f"{path}: 'labels' must hold N = {len(pixels)} integers in 1..1000")
        images.append(pixels.reshape(-1, 3, 32, 32))  # rows are channel-major: R, G, B planes
        labels.append(label.astype(np.int64) - 1)
    return np.concatenate(images), np.concatenate(labels)


def load_imagenet32(
    data_dir: PathLike | None, split: str = "train", *, batches: Sequence[int] | None = None
) -> _data.Split:
    """Read downsampled ImageNet 32×32 (npz batches) as a :class:`~analogtorch.data.Split`.

    ``split``: "train" (``train_data_batch_1.npz`` … ``train_data_batch_10.npz``, or only the
    ``batches`` listed) or "val" (``val_data.npz``; "test" is an alias). Looks in ``data_dir``
    and its subfolders ``imagenet32/``, ``Imagenet32_train_npz/``, ``Imagenet32_val_npz/``
    (``$ANALOGTORCH_DATA`` and ``~/.cache/analogtorch`` when ``data_dir`` is None). Returns float32
    images (N, 3, 32, 32) in [0, 1] and 0-based int64 labels 0..999 (files store 1..1000).
    The full train split is ≈15 GiB as float32. Raises ``FileNotFoundError`` when files are
    missing (they must be downloaded by the user from image-net.org).
    """
    images, labels = _read_imagenet32(data_dir, split, batches)
    return _data.Split(
        images=torch.from_numpy(images).float().div_(255.0), labels=torch.from_numpy(labels)
    )


def _load_uint8_or_float(
    name: str, split: str, data_dir: PathLike | None, batches: Sequence[int] | None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Images (uint8 or float), labels and the factor mapping images to [0, 1]."""
    if name == "imagenet32":
        if split == "train":
            images, labels = _read_imagenet32(data_dir, "train", batches)
        else:
            images, labels = _read_imagenet32(data_dir, "val")
        return torch.from_numpy(images), torch.from_numpy(labels), 1.0 / 255.0
    loaded = _data.load_dataset(name, split, data_dir=data_dir, download=False)
    return loaded.images, loaded.labels, 1.0


def _subsample(
    images: torch.Tensor, labels: torch.Tensor, n: int | None, what: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return images, labels
    n = check_int(what, n)
    if n > len(labels):
        raise ValueError(f"{what}={n} exceeds the {len(labels)} samples available")
    pick = torch.randperm(len(labels), generator=gen)[:n]
    return images[pick], labels[pick]


def image_classification(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    data_dir: PathLike | None = None,
    flatten: bool = True,
    batches: Sequence[int] | None = None,
) -> TaskData:
    """Classification task from a locally available image dataset.

    ``name``: one of :data:`IMAGE_TASKS`. ``n_train`` / ``n_test``: random subsets (drawn with
    ``seed``) of the train and test (ImageNet-32: val) splits; None keeps all. Inputs are
    normalised per channel by the training mean/std and flattened to (N, C·H·W) when
    ``flatten``, else kept (N, C, H, W). ``batches`` (ImageNet-32 only): read only these train
    batch files (1..10) to save memory; all ten hold ≈3.7 GiB of uint8 pixels. Missing files
    raise ``FileNotFoundError``.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in IMAGE_TASKS:
        raise ValueError(f"name={name!r} is not an image task; expected one of {IMAGE_TASKS}")
    if batches is not None and key != "imagenet32":
        raise ValueError(f"batches={batches!r} applies to 'imagenet32' only, not name={name!r}")
    gen = generator(seed)
    parts = []
    for split, n, what in (("train", n_train, "n_train"), ("test", n_test, "n_test")):
        images, labels, scale = _load_uint8_or_float(key, split, data_dir, batches)
        images, labels = _subsample(images, labels, n, what, gen)
        images = images.float() * scale if scale != 1.0 else images.float()
        parts.append((images, labels.long()))
    (x_train, y_train), (x_test, y_test) = parts
    stats = x_train.double().transpose(0, 1).reshape(x_train.shape[1], -1)
    mean, std = stats.mean(dim=1), stats.std(dim=1).clamp_min(1e-12)
    shape = (1, -1, 1, 1)
    x_train = (x_train - mean.float().view(shape)) / std.float().view(shape)
    x_test = (x_test - mean.float().view(shape)) / std.float().view(shape)
    if flatten:
        x_train, x_test = x_train.flatten(1), x_test.flatten(1)
    info: dict[str, object] = {
        "dataset": key,
        "num_classes": NUM_CLASSES[key],
        "image_shape": list(parts[0][0].shape[1:]),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "flatten": flatten,
    }
    return TaskData(key, "classification", x_train, y_train, x_test, y_test, info)


for _name in IMAGE_TASKS:
    register_task(_name)(partial(image_classification, _name))
