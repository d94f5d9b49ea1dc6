"""The default FID feature extractor for MNIST-like data: a small CNN classifier's features.

Inception-v3 (the standard FID network, :func:`analogtorch.ais.fid.inception_extractor`) was
trained on ImageNet photographs and needs a download; for 28x28 grayscale digits and clothes a
classifier trained on the dataset itself gives more meaningful, offline features (as in the
"FID with a LeNet" practice for MNIST GANs). The network is
:func:`analogtorch.models.cnn.build_small_cnn` (two conv-BN-ReLU-maxpool stages, then
Linear(128)-ReLU-Linear(10)); the features ``φ(x) ∈ R^128`` are the penultimate (post-ReLU)
activations.

Training is seeded and runs on one intra-op thread (:func:`analogtorch.threads.one_thread`),
so a seed gives the same network bit for bit whatever thread count the caller set.
Checkpoints are cached in ``~/.cache/analogtorch/fid/<dataset>-cnn-<version>[-<options>].pt``
and reused. A classifier can be trained at a lower resolution (``image_size=14`` for the
14x14 images of a CPU study), with the dataset's images downsampled by area averaging.
FID, KID and precision/recall computed at different resolutions, or with different
extractors, are not comparable: each extractor's ``name`` records its dataset, version,
resolution and test accuracy.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from ..data import _ALIASES, DATASET_NAMES, Split, _cache_root, load_dataset, make_loader
from ..models.cnn import CLASSIFIER_HIDDEN, build_small_cnn
from ..threads import one_thread
from ..train.evaluate import accuracy
from ..train.fit import fit

EXTRACTOR_VERSION = "v1"
FEATURE_DIM = CLASSIFIER_HIDDEN
CLASSIFIER_WIDTH = 16
TRAIN_BATCH_SIZE = 128
LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 3
# (channels, height = width) of each dataset's images as load_dataset returns them.
NATIVE_SHAPES = {"mnist": (1, 28), "fashion-mnist": (1, 28), "cifar10": (3, 32)}
_CHECKPOINT_FORMAT = "analogtorch-fid-cnn"


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize images (N, C, H, W) to (N, C, size, size): area averaging when shrinking (for
    28 -> 14 the mean of each 2x2 block), bilinear interpolation when enlarging."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if size < 1:
        raise ValueError(f"size={size} must be >= 1")
    height, width = images.shape[-2:]
    if height == width == size:
        return images
    if size <= min(height, width):
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class ClassifierExtractor:
    """Penultimate-layer features (N, 128) of a trained small CNN; images of another size are
    resized to ``image_size`` with :func:`resize_images` first."""

    def __init__(
        self,
        classifier: nn.Sequential,
        *,
        name: str,
        image_size: int,
        in_channels: int,
        test_accuracy: float,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.body = classifier[:-1].to(self.device).eval()
        self.name = name
        self.image_size = image_size
        self.in_channels = in_channels
        self.test_accuracy = test_accuracy

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name}: images must be (N, {self.in_channels}, H, W), got "
                f"{tuple(images.shape)}"
            )
        images = resize_images(images.float(), self.image_size).to(self.device)
        return self.body(images).cpu()

    def __repr__(self) -> str:
        return f"ClassifierExtractor({self.name!r}, image_size={self.image_size})"


def _canonical(dataset: str) -> str:
    name = _ALIASES.get(dataset.lower())
    if name is None:
        raise ValueError(
            f"dataset={dataset!r} is not a known dataset; expected one of {DATASET_NAMES}"
        )
    return name


def _variant(
    dataset: str, image_size: int | None, epochs: int, seed: int, n_train: int | None
) -> str:
    """Tag of a classifier's training options that differ from the defaults."""
    tag = ""
    if image_size is not None and image_size != NATIVE_SHAPES[dataset][1]:
        tag += f"-{image_size}px"
    if epochs != DEFAULT_EPOCHS:
        tag += f"-e{epochs}"
    if seed != 0:
        tag += f"-seed{seed}"
    if n_train is not None:
        tag += f"-n{n_train}"
    return tag


def checkpoint_path(
    dataset: str,
    *,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    n_train: int | None = None,
) -> Path:
    """Where the classifier for these options is cached:
    ``<cache_dir or ~/.cache/analogtorch/fid>/<dataset>-cnn-<version>[-<options>].pt``."""
    dataset = _canonical(dataset)
    root = Path(cache_dir).expanduser() if cache_dir is not None else _cache_root() / "fid"
    tag = _variant(dataset, image_size, epochs, seed, n_train)
    return root / f"{dataset}-cnn-{EXTRACTOR_VERSION}{tag}.pt"


def _check_training_args(epochs: int, n_train: int | None, image_size: int | None) -> None:
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if n_train is not None and n_train < 1:
        raise ValueError(f"n_train={n_train} must be >= 1 (or None for the whole split)")
    if image_size is not None and image_size < 4:
        raise ValueError(f"image_size={image_size} must be >= 4 (two 2x2 poolings)")


def _train(
    dataset: str,
    *,
    epochs: int,
    seed: int,
    data_dir: str | Path | None,
    n_train: int | None,
    progress: bool,
    image_size: int | None,
    split: Split | None,
    test_split: Split | None,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train the classifier; returns it (eval mode) and its checkpoint metadata."""
    _check_training_args(epochs, n_train, image_size)
    start = time.perf_counter()
    split = split if split is not None else load_dataset(dataset, "train", data_dir=data_dir)
    test_split = test_split if test_split is not None else load_dataset(dataset, "test", data_dir)
    size = image_size if image_size is not None else split.images.shape[-1]
    if n_train is not None:
        split = Split(split.images[:n_train], split.labels[:n_train])
    train = Split(resize_images(split.images, size), split.labels)
    test = Split(resize_images(test_split.images, size), test_split.labels)
    in_channels = train.images.shape[1]
    num_classes = int(torch.cat([train.labels, test.labels]).max()) + 1
    model = build_small_cnn(in_channels, num_classes, CLASSIFIER_WIDTH, size, seed=seed)
    label = f"FID classifier ({dataset}, {size}x{size})"
    loader = make_loader(train, TRAIN_BATCH_SIZE, shuffle=True, seed=seed)
    with one_thread():  # the features score every model: the same on every machine
        fit(model, loader, epochs=epochs, lr=LEARNING_RATE, label=label, show_progress=progress)
        test_accuracy = accuracy(model, make_loader(test, 1000, shuffle=False))
    seconds = time.perf_counter() - start
    if progress:
        Console(stderr=True).print(
            f"{label}: test accuracy {test_accuracy:.2%} after {epochs} epoch(s) on "
            f"{len(train)} images, {seconds:.0f} s"
        )
    tag = _variant(dataset, size, epochs, seed, n_train)
    metadata = {
        "format": _CHECKPOINT_FORMAT,
        "name": f"cnn-{dataset}-{EXTRACTOR_VERSION}{tag} (test acc {test_accuracy:.1%})",
        "version": EXTRACTOR_VERSION,
        "dataset": dataset,
        "image_size": size,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "width": CLASSIFIER_WIDTH,
        "epochs": epochs,
        "seed": seed,
        "n_train": len(train),
        "test_accuracy": test_accuracy,
        "train_seconds": seconds,
    }
    return model, metadata


def train_classifier(
    dataset: str,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    data_dir: str | Path | None = None,
    n_train: int | None = None,
    progress: bool = True,
    image_size: int | None = None,
    split: Split | None = None,
    test_split: Split | None = None,
) -> nn.Module:
    """Train the feature classifier on ``load_dataset(dataset, "train")`` (Adam, lr 1e-3,
    batch 128, cross-entropy; initialisation and batch order from ``seed``) and report its test
    accuracy when ``progress``.

    ``n_train``: use only the first ``n_train`` training images. ``image_size``: train on
    images resized to this size (default: the data's own). ``split`` / ``test_split``: use
    these instead of loading the dataset (e.g. small synthetic data in tests). Returns the
    network (:func:`analogtorch.models.cnn.build_small_cnn`) in eval mode.
    """
    model, _ = _train(
        _canonical(dataset),
        epochs=epochs,
        seed=seed,
        data_dir=data_dir,
        n_train=n_train,
        progress=progress,
        image_size=image_size,
        split=split,
        test_split=test_split,
    )
    return model


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None (with a warning) if it is unreadable or foreign."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        warnings.warn(
            f"{path}: unreadable FID classifier checkpoint ({exc}); retraining", stacklevel=3
        )
        return None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        warnings.warn(f"{path} is not an FID classifier checkpoint; retraining", stacklevel=3)
        return None
    return checkpoint


def _save_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see a
    half-written checkpoint, and concurrent writers leave one complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(checkpoint, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def prepare_extractor(
    dataset: str,
    *,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    data_dir: str | Path | None = None,
    n_train: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, float]:
    """Train and cache the feature classifier for ``dataset`` unless a checkpoint for these
    options is already cached (``force=True`` retrains). Returns the checkpoint's path and the
    classifier's test accuracy (a fraction in [0, 1])."""
    dataset = _canonical(dataset)
    _check_training_args(epochs, n_train, image_size)
    size = image_size if image_size is not None else NATIVE_SHAPES[dataset][1]
    path = checkpoint_path(
        dataset, cache_dir=cache_dir, image_size=size, epochs=epochs, seed=seed, n_train=n_train
    )
    if not force and path.is_file() and (checkpoint := _read_checkpoint(path)) is not None:
        return path, float(checkpoint["test_accuracy"])
    model, metadata = _train(
        dataset,
        epochs=epochs,
        seed=seed,
        data_dir=data_dir,
        n_train=n_train,
        progress=progress,
        image_size=size,
        split=None,
        test_split=None,
    )
    _save_atomically({**metadata, "state_dict": model.state_dict()}, path)
    return path, metadata["test_accuracy"]


def load_extractor(path: str | Path, *, device: str | torch.device = "cpu") -> ClassifierExtractor:
    """The :class:`ClassifierExtractor` stored at ``path`` by :func:`prepare_extractor`."""
    path = Path(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an FID classifier checkpoint written by prepare_extractor")
    size = checkpoint["image_size"]
    model = build_small_cnn(
        checkpoint["in_channels"], checkpoint["num_classes"], checkpoint["width"], size
    )
    model.load_state_dict(checkpoint["state_dict"])
    return ClassifierExtractor(
        model,
        name=checkpoint["name"],
        image_size=size,
        in_channels=checkpoint["in_channels"],
        test_accuracy=float(checkpoint["test_accuracy"]),
        device=device,
    )


def classifier_extractor(
    dataset: str,
    *,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    data_dir: str | Path | None = None,
    n_train: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> ClassifierExtractor:
    """The default FID extractor for ``dataset``: the cached classifier for these options,
    trained and cached first when missing (see :func:`prepare_extractor`). Its ``name`` reads
    e.g. ``"cnn-mnist-v1 (test acc 99.1%)"`` or ``"cnn-mnist-v1-14px (test acc 98.6%)"``."""
    path, _ = prepare_extractor(
        dataset,
        cache_dir=cache_dir,
        image_size=image_size,
        epochs=epochs,
        seed=seed,
        data_dir=data_dir,
        n_train=n_train,
        progress=progress,
    )
    return load_extractor(path, device=device)
