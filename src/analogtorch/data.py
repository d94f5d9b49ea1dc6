"""MNIST, Fashion-MNIST and CIFAR-10 as tensors.

:func:`load_dataset` finds a dataset's standard files, parses them with numpy and returns a
:class:`Split`: float32 images in [0, 1] of shape (N, C, H, W) and int64 labels of shape (N,).
Layouts read:

- MNIST and Fashion-MNIST: the four IDX files, gzipped or not.
- CIFAR-10: the python pickle batches (``cifar-10-batches-py/``) or their tarball
  ``cifar-10-python.tar.gz``; or an image folder ``{train,test}/<class>/*.jpg|png`` (label =
  index in :data:`CIFAR10_CLASSES`) or its tarball ``cifar10-jpeg.tar.gz``. Decoded images are
  cached as ``.npz`` in ``~/.cache/analogtorch/decoded/``, keyed by the sources' paths, sizes and
  modification times, so only the first load pays for decoding. An image folder lists its
  images class by class; they are returned in a fixed shuffled order (by the SHA-256 of
  ``<class>/<file name>``, the same on every machine, for the folder and its tarball), as the
  original batches are shuffled, so the first ``n`` images are a sample of every class.

Directories searched, in order: ``data_dir``, ``$ANALOGTORCH_DATA``, ``~/.cache/analogtorch``,
``/usr/share/datasets``, each with the usual subfolders (``mnist/``, ``MNIST/raw/``, ...). When
nothing is found and ``download=True``, the official files are fetched into
``~/.cache/analogtorch/<name>/`` and checked against their published MD5s.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .files import atomic_path

# Label = index in this tuple, the order of the original CIFAR-10 release.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10")
SPLITS = ("train", "test")
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 30.0
# How files become tensors, in short: change it with any change to decoding (order, scaling,
# channels). It keys the decoded-image cache and enters every dataset fingerprint, so a run
# folder or cached model made from differently decoded data is never taken for this data.
DECODING = "order=sha256-name"

ProgressCallback = Callable[[str], None]
_Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images (N, C, H, W), integer labels (N,)

_ALIASES = {name: name for name in DATASET_NAMES} | {
    "fashion_mnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
}


def is_file_dataset(name: str) -> bool:
    """Whether ``name`` (or an alias) is a dataset read from files, not generated."""
    return name.lower() in _ALIASES


_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
# Where a dataset's files usually sit inside a search root ("" is the root itself).
_SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw", ""),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw", ""),
    "cifar10": ("cifar10", "cifar-10-batches-py", "cifar10-jpeg", ""),
}
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR_TAR = "cifar-10-python.tar.gz"
_IMAGE_TAR = "cifar10-jpeg.tar.gz"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Official mirrors and the MD5s of their (compressed) files, as listed in torchvision's
# datasets/mnist.py and datasets/cifar.py.
_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/",
        {_CIFAR_TAR: "c58f30108f718f92721af3b95e74349a"},
    ),
}


class ChecksumMismatchError(RuntimeError):
    """A downloaded file's MD5 differs from the published one (corrupt or tampered download)."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    ``images``: float32 in [0, 1], shape (N, C, H, W). ``labels``: int64 class indices, shape (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"images must be (N, C, H, W) and labels (N,); got images "
                f"{tuple(self.images.shape)} and labels {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return self.labels.shape[0]


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Split:
    """Load one split of MNIST, Fashion-MNIST or CIFAR-10 (see the module docstring).

    ``name``: "mnist", "fashion-mnist" ("fashion_mnist", "fmnist") or "cifar10".
    ``split``: "train" or "test". ``progress`` receives status messages; nothing is printed.

    CIFAR-10 pickle batches are read with a restricted unpickler that accepts numpy arrays and
    plain containers only, so a crafted batch cannot run code (a download is also checked
    against the official MD5).

    Raises ``FileNotFoundError`` (saying what was looked for, where, and how to get it) when the
    files are missing and cannot be downloaded, ``ChecksumMismatchError`` for a bad download and
    ``ValueError`` for an unknown name or split or a corrupt file.
    """
    dataset = _ALIASES.get(name.lower())
    if dataset is None:
        raise ValueError(f"name={name!r} is not a known dataset; expected one of {DATASET_NAMES}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a dataset split; expected one of {SPLITS}")
    report = progress or (lambda _message: None)
    searched = [root / sub for root in _search_roots(data_dir) for sub in _SUBDIRS[dataset]]
    found = _find(dataset, split, searched) or _fetch(dataset, split, searched, download, report)
    kind, path = found
    images, labels = _read_cached(kind, path, split, f"{_TITLES[dataset]} {split}", report)
    if len(images) == 0 or labels.shape != (len(images),) or not np.isin(labels, range(10)).all():
        raise ValueError(f"{path}: expected N >= 1 images and N labels in 0..9, got {len(images)}")
    return Split(
        images=torch.from_numpy(images.astype(np.float32, order="C")).div_(255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )


def dataset_fingerprint(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """``<dataset>:<SHA-256 prefix>`` of :data:`DECODING` and the files :func:`load_dataset`
    would read for both splits (the run engine's data identity: another copy or version of a
    dataset, or another way of decoding it, gives another fingerprint). Nothing is
    downloaded; missing files raise ``FileNotFoundError``."""
    dataset = _ALIASES.get(name.lower())
    if dataset is None:
        raise ValueError(f"name={name!r} is not a known dataset; expected one of {DATASET_NAMES}")
    searched = [root / sub for root in _search_roots(data_dir) for sub in _SUBDIRS[dataset]]
    digest = hashlib.sha256(DECODING.encode())  # the same files decoded otherwise: other data
    for split in SPLITS:
        found = _find(dataset, split, searched)
        if found is None:
            raise _not_found(dataset, split, searched, "the run engine fingerprints it first")
        _, path = found
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode())
            digest.update(_file_digest(file))
    return f"{dataset}:{digest.hexdigest()[:16]}"


def dataset_root(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The absolute search root from which :func:`load_dataset` would read both splits of
    ``name`` (``data_dir``, ``$ANALOGTORCH_DATA``, the cache, the system folder): passed on
    explicitly, it lets another process (a Ray worker) read the same files whatever its own
    environment. Nothing is downloaded; missing files raise ``FileNotFoundError``."""
    dataset = _ALIASES.get(name.lower())
    if dataset is None:
        raise ValueError(f"name={name!r} is not a known dataset; expected one of {DATASET_NAMES}")
    roots = _search_roots(data_dir)
    for root in roots:
        folders = [root / sub for sub in _SUBDIRS[dataset]]
        if all(_find(dataset, split, folders) for split in SPLITS):
            return root.absolute()
    searched = [root / sub for root in roots for sub in _SUBDIRS[dataset]]
    raise _not_found(dataset, "train", searched, "looked up before the run starts")


_FILE_DIGESTS: dict[tuple[str, int, int], bytes] = {}


def _file_digest(path: Path) -> bytes:
    """SHA-256 of a file's bytes, reused while its size and mtime are unchanged."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.digest()
    return _FILE_DIGESTS[key]


def make_loader(split: Split, batch_size: int, shuffle: bool = True, seed: int = 0) -> DataLoader:
    """DataLoader of ``(images, labels)`` batches whose order depends only on ``seed``."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be a positive integer")
    generator = torch.Generator().manual_seed(seed)
    dataset = TensorDataset(split.images, split.labels)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


# Decoded splits of this process, keyed by the files' identity: a study's cells (and a long
# run's epochs) read a dataset once. The arrays are never handed out, only fresh tensors.
_DECODED: dict[tuple[object, ...], _Arrays] = {}
_DECODED_MAX = 4


def _read_cached(
    kind: str, path: Path, split: str, title: str, report: ProgressCallback
) -> _Arrays:
    """``_READERS[kind](path, split)``, reused while the files' sizes and mtimes are unchanged."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    identity = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = (kind, str(path.resolve()), split, identity)
    if key not in _DECODED:
        report(f"reading {title} split from {path}")
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = _READERS[kind](path, split, report)
    return _DECODED[key]


def _cache_root() -> Path:
    return Path.home() / ".cache" / "analogtorch"


def _search_roots(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    if os.environ.get("ANALOGTORCH_DATA"):
        roots.append(Path(os.environ["ANALOGTORCH_DATA"]).expanduser())
    roots += [_cache_root(), SYSTEM_DATA_DIR]
    return list(dict.fromkeys(roots))


def _find(dataset: str, split: str, directories: list[Path]) -> tuple[str, Path] | None:
    return next((hit for d in directories if (hit := _locate(dataset, split, d))), None)


def _locate(dataset: str, split: str, directory: Path) -> tuple[str, Path] | None:
    """The layout kind and path of ``split`` inside ``directory``, or None if absent."""
    if dataset != "cifar10":
        found = all(_idx_path(directory, stem) for stem in _IDX_STEMS[split])
        return ("idx", directory) if found else None
    if all((directory / batch).is_file() for batch in _CIFAR_BATCHES[split]):
        return "cifar-pickle", directory
    if (directory / _CIFAR_TAR).is_file():
        return "cifar-pickle-tar", directory / _CIFAR_TAR
    if any((directory / split / name).is_dir() for name in CIFAR10_CLASSES):
        return "image-folder", directory / split
    if (directory / _IMAGE_TAR).is_file():
        return "image-tar", directory / _IMAGE_TAR
    return None


def _idx_path(directory: Path, stem: str) -> Path | None:
    candidates = (directory / f"{stem}.gz", directory / stem)
    return next((path for path in candidates if path.is_file()), None)


def _fetch(
    dataset: str, split: str, searched: list[Path], download: bool, report: ProgressCallback
) -> tuple[str, Path]:
    """Download ``dataset`` into the cache and locate it, or raise a helpful FileNotFoundError."""
    base_url, checksums = _MIRRORS[dataset]
    if not download:
        raise _not_found(dataset, split, searched, "download=False, so no download was tried")
    try:
        _download(base_url, checksums, _cache_root() / dataset, report)
    except (OSError, HTTPException) as exc:
        reason = f"Downloading from {base_url} failed: {exc}"
        raise _not_found(dataset, split, searched, reason) from exc
    found = _find(dataset, split, searched)
    if found is None:
        reason = f"The download into {_cache_root() / dataset} did not produce them"
        raise _not_found(dataset, split, searched, reason)
    return found


def _not_found(dataset: str, split: str, searched: list[Path], reason: str) -> FileNotFoundError:
    """One line (the command line prints it as it is): what, where, why, how to get it."""
    base_url, checksums = _MIRRORS[dataset]
    if dataset == "cifar10":
        wanted = f"{', '.join(_CIFAR_BATCHES[split])} or {_CIFAR_TAR}, or {split}/<class>/*.jpg|png"
        wanted += f" or {_IMAGE_TAR}"
    else:
        wanted = " and ".join(f"{stem}[.gz]" for stem in _IDX_STEMS[split])
    subdirs = [sub for sub in _SUBDIRS[dataset] if sub]
    # ``searched`` is every root followed by each of its subfolders ("" = the root itself).
    roots = [
        str(d)
        for i, d in enumerate(searched)
        if _SUBDIRS[dataset][i % len(_SUBDIRS[dataset])] == ""
    ]
    parts = [
        f"{_TITLES[dataset]} ({split} split) not found: looked for {wanted} in "
        f"{', '.join(roots)} and their {', '.join(f'{sub}/' for sub in subdirs)} subfolders "
        f"({reason})",
        f"to get it, download {', '.join(checksums)} from {base_url} into one of these "
        f"folders (e.g. {_cache_root() / dataset}), or pass --data-dir / data_dir=... or set "
        "ANALOGTORCH_DATA to the folder that holds them",
    ]
    if dataset == "fashion-mnist":
        parts.append(
            "on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs the files to "
            f"{SYSTEM_DATA_DIR / 'fashion-mnist'}"
        )
    return FileNotFoundError("; ".join(parts))


def _download(
    base_url: str, checksums: dict[str, str], target: Path, report: ProgressCallback
) -> None:
    """Fetch each file into ``target``, verifying its MD5 before it gets its final name."""
    target.mkdir(parents=True, exist_ok=True)
    for file_name, expected_md5 in checksums.items():
        destination = target / file_name
        if destination.is_file():
            continue
        url = base_url + file_name
        report(f"downloading {url}")
        digest = hashlib.md5(usedforsecurity=False)
        with atomic_path(destination) as partial:  # its own file per process
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
                partial.open("wb") as out,
            ):
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected_md5:
                raise ChecksumMismatchError(
                    f"{url}: MD5 {digest.hexdigest()} differs from the published {expected_md5}; "
                    "the download is corrupt or was altered and has been deleted. Try again "
                    f"later or download it by hand into {target}."
                )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse one uint8 IDX file (optionally gzipped): magic 0x0000 0x08 ndim, ndim big-endian
    uint32 sizes, then the data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path} is a corrupt gzip file: {exc}") from exc
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes((0, 0, 0x08, ndim)):
        raise ValueError(
            f"{path} is not an IDX file of uint8 with {ndim} dimension(s): magic number "
            f"{raw[:4].hex()}, expected {bytes((0, 0, 0x08, ndim)).hex()}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(dims)):
        raise ValueError(
            f"{path} is truncated or corrupt: its header says {dims} = {int(np.prod(dims))} "
            f"bytes of data, but {len(raw) - header} follow"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_idx_split(directory: Path, split: str, report: ProgressCallback) -> _Arrays:
    image_path, label_path = (_idx_path(directory, stem) for stem in _IDX_STEMS[split])
    images, labels = _read_idx(image_path, ndim=3), _read_idx(label_path, ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"{image_path} holds images {images.shape} and {label_path} {len(labels)} labels; "
            "expected N images of 28x28 and N labels"
        )
    return images[:, None], labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, bytes, numbers and numpy
    arrays. Any other global (``os.system``, ``builtins.eval``, ...) is refused, so a
    crafted file cannot run code."""

    _ALLOWED = frozenset(
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ) | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR-10 batch (only numpy arrays)"
            )
        return super().find_class(module, name)


def _unpickle_cifar_batch(file: io.BufferedIOBase, where: str) -> _Arrays:
    try:
        batch = _ArrayUnpickler(file, encoding="bytes").load()
        data, labels = batch[b"data"], np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # unpickling a damaged file can raise nearly any exception
        raise ValueError(f"{where} is not a CIFAR-10 python batch: {exc!r}") from exc
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        raise ValueError(f"{where}: b'data' must be a uint8 array of shape (N, 3072)")
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar_batches(directory: Path, split: str, report: ProgressCallback) -> _Arrays:
    batches = []
    for name in _CIFAR_BATCHES[split]:
        with (directory / name).open("rb") as file:
            batches.append(_unpickle_cifar_batch(file, str(directory / name)))
    return tuple(np.concatenate(parts) for parts in zip(*batches, strict=True))


def _read_cifar_tar(path: Path, split: str, report: ProgressCallback) -> _Arrays:
    wanted = _CIFAR_BATCHES[split]
    batches = {
        member.name: _unpickle_cifar_batch(io.BytesIO(data), f"{path}:{member}")
        for member, data in _iter_tar(path, lambda member: member.name in wanted)
    }
    if missing := [name for name in wanted if name not in batches]:
        raise ValueError(f"{path} lacks the CIFAR-10 batches {missing}")
    return tuple(np.concatenate(parts) for parts in zip(*map(batches.get, wanted), strict=True))


def _iter_tar(
    path: Path, keep: Callable[[PurePosixPath], bool]
) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield the name and bytes of each regular member that ``keep`` accepts, without
    extracting anything to disk."""
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if member.isfile() and keep(name):
                    yield name, tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable tar archive: {exc}") from exc


def _read_image_folder(split_dir: Path, split: str, report: ProgressCallback) -> _Arrays:
    files = sorted(p for p in split_dir.glob("*/*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    entries = ((_class_label(p.parent.name, p), str(p), p.read_bytes()) for p in files)
    stem = f"{split_dir.parent.name}-{split}"
    return _decode_cached(files, stem, lambda: entries, split_dir, report)


def _read_image_tar(path: Path, split: str, report: ProgressCallback) -> _Arrays:
    def keep(name: PurePosixPath) -> bool:
        in_split = len(name.parts) >= 3 and name.parts[-3] == split
        return in_split and name.suffix.lower() in _IMAGE_SUFFIXES

    def entries() -> Iterator[tuple[int, str, bytes]]:
        for name, data in _iter_tar(path, keep):
            yield _class_label(name.parts[-2], f"{path}:{name}"), f"{path}:{name}", data

    stem = f"{path.name.removesuffix('.tar.gz')}-{split}"
    return _decode_cached([path], stem, entries, f"{path} ({split}/<class>/)", report)


def _class_label(folder: str, where: object) -> int:
    if folder not in CIFAR10_CLASSES:
        raise ValueError(f"{where}: folder {folder!r} is not a CIFAR-10 class {CIFAR10_CLASSES}")
    return CIFAR10_CLASSES.index(folder)


def _decode_cached(
    sources: list[Path],
    stem: str,
    entries: Callable[[], Iterable[tuple[int, str, bytes]]],
    where: object,
    report: ProgressCallback,
) -> _Arrays:
    """Decode ``entries()`` (label, name, encoded image), or reuse the ``.npz`` cached for the
    same ``sources`` (same paths, sizes and modification times)."""
    key = hashlib.sha1(DECODING.encode(), usedforsecurity=False)  # e.g. not class-sorted caches
    for source in sources:
        stat = source.stat()
        key.update(f"{source.absolute()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cache_file = _cache_root() / "decoded" / f"{stem}-{key.hexdigest()[:16]}.npz"
    try:
        with np.load(cache_file) as cached:
            return cached["images"], cached["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # no usable cache yet: decode below
    items = sorted(entries(), key=lambda item: _shuffle_key(item[1]))
    if not items:
        raise ValueError(f"no .jpg/.png images found in {where}")
    report(f"decoding {len(items)} images from {where} (cached for later loads)")
    images = np.empty((len(items), 32, 32, 3), np.uint8)
    for index, (_, name, data) in enumerate(items):
        images[index] = _decode_image(data, name)
    images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    labels = np.array([item[0] for item in items], dtype=np.int64)
    try:
        with atomic_path(cache_file) as partial, partial.open("wb") as out:
            np.savez(out, images=images, labels=labels)
    except OSError as exc:
        report(f"could not write the decoded-image cache {cache_file}: {exc}")
    return images, labels


def _shuffle_key(name: str) -> bytes:
    """Where the image ``.../<class>/<file>`` goes in a loaded split (module docstring)."""
    relative = "/".join(PurePosixPath(name.replace("\\", "/")).parts[-2:])
    return hashlib.sha256(relative.encode()).digest()


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one encoded 32x32 image to a (32, 32, 3) uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError  # Pillow is only needed for image folders

    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{name} is not a readable image: {exc}") from exc
    if rgb.shape != (32, 32, 3):
        raise ValueError(f"{name} is {rgb.shape[1]}x{rgb.shape[0]} pixels; CIFAR-10 is 32x32")
    return rgb


_READERS = {
    "idx": _read_idx_split,
    "cifar-pickle": _read_cifar_batches,
    "cifar-pickle-tar": _read_cifar_tar,
    "image-folder": _read_image_folder,
    "image-tar": _read_image_tar,
}
