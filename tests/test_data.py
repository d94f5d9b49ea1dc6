"""Dataset loading from tiny files written in each real on-disk format."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from analogtorch import data
from analogtorch.data import CIFAR10_CLASSES, ChecksumMismatchError, Split, load_dataset

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def isolated_search_roots(tmp_path, monkeypatch):
    """Keep tests away from the real ~/.cache, $ANALOGTORCH_DATA and /usr/share/datasets."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANALOGTORCH_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", tmp_path / "system")


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_dataset(directory: Path, seed: int, compress: bool = True) -> dict[str, np.ndarray]:
    """Write train (5 images) and test (3 images) IDX files; return the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, count in (("train", 5), ("t10k", 3)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (count, 28, 28), np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, count, np.uint8)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return arrays


def cifar_batches(seed: int) -> dict[str, dict[bytes, object]]:
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: {
            b"data": rng.integers(0, 256, (2, 3072), np.uint8),
            b"labels": rng.integers(0, 10, 2).tolist(),
        }
        for name in names
    }


def write_cifar_batches(directory: Path, batches: dict[str, dict[bytes, object]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (directory / name).write_bytes(pickle.dumps(batch))


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def image_folder_files(seed: int, fmt: str) -> dict[str, tuple[np.ndarray, int]]:
    """Relative path -> (HWC uint8 pixels, label) for 2 train and 1 test image per class used."""
    rng = np.random.default_rng(seed)
    suffix = ".png" if fmt == "PNG" else ".jpg"
    files = {}
    for label in (0, 3, 9):
        for split, count in (("train", 2), ("test", 1)):
            for index in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), np.uint8)
                if fmt == "JPEG":  # smooth images survive JPEG almost unchanged
                    pixels = np.full((32, 32, 3), rng.integers(0, 256, 3), np.uint8)
                relative = f"{split}/{CIFAR10_CLASSES[label]}/{index:04d}{suffix}"
                files[relative] = (pixels, label)
    return files


def write_image_folder(root: Path, files: dict[str, tuple[np.ndarray, int]], fmt: str) -> None:
    for relative, (pixels, _) in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_image(pixels, fmt))


def expected_images(files: dict[str, tuple[np.ndarray, int]], split: str) -> tuple[np.ndarray, ...]:
    """Images (N, 3, 32, 32) and labels in the loader's documented order: by the SHA-256 of
    ``<class>/<file name>``."""
    in_split = {name: entry for name, entry in files.items() if name.startswith(f"{split}/")}

    def order(name: str) -> bytes:
        return hashlib.sha256(name.split("/", 1)[1].encode()).digest()

    chosen = sorted(in_split, key=order)
    images = np.stack([in_split[name][0].transpose(2, 0, 1) for name in chosen])
    return images, np.array([in_split[name][1] for name in chosen])


def make_tarball(source_dir: Path, tar_path: Path, arcname: str) -> None:
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(source_dir, arcname=arcname)


def test_mnist_idx_gz_loads_with_shapes_dtypes_range_and_exact_labels(tmp_path):
    arrays = write_idx_dataset(tmp_path / "mnist", seed=0)
    for split, prefix, count in (("train", "train", 5), ("test", "t10k", 3)):
        loaded = load_dataset("mnist", split, data_dir=tmp_path, download=False)
        assert loaded.images.shape == (count, 1, 28, 28) and len(loaded) == count
        assert loaded.images.dtype == torch.float32 and loaded.labels.dtype == torch.int64
        assert loaded.images.min() >= 0.0 and loaded.images.max() <= 1.0
        pixels = (loaded.images[:, 0] * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(pixels, arrays[f"{prefix}-images-idx3-ubyte"])
        np.testing.assert_array_equal(loaded.labels, arrays[f"{prefix}-labels-idx1-ubyte"])


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion_mnist", "fmnist", "FMNIST"])
def test_fashion_mnist_aliases_read_uncompressed_torchvision_layout(tmp_path, name):
    arrays = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", seed=1, compress=False)
    loaded = load_dataset(name, "test", data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(loaded.labels, arrays["t10k-labels-idx1-ubyte"])


def test_corrupt_idx_magic_raises_value_error_naming_the_file(tmp_path):
    write_idx_dataset(tmp_path, seed=0)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + bytes(100)))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*magic number 00000d03"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_truncated_idx_raises_value_error_naming_the_file(tmp_path):
    write_idx_dataset(tmp_path, seed=0)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1]))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz is truncated"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)


def test_cifar_pickle_batches_concatenate_in_order_with_exact_pixels(tmp_path):
    batches = cifar_batches(seed=2)
    write_cifar_batches(tmp_path / "cifar-10-batches-py", batches)
    train = load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    expected = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert train.images.shape == (10, 3, 32, 32)
    pixels = (train.images * 255).round().to(torch.uint8).reshape(10, 3072).numpy()
    np.testing.assert_array_equal(pixels, expected)
    test = load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    assert test.labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar_python_tarball_loads_without_extracting(tmp_path):
    batches = cifar_batches(seed=3)
    write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py", batches)
    root = tmp_path / "root"
    root.mkdir()
    make_tarball(
        tmp_path / "src" / "cifar-10-batches-py",
        root / "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
    )
    train = load_dataset("cifar10", "train", data_dir=root, download=False)
    labels = [label for i in range(1, 6) for label in batches[f"data_batch_{i}"][b"labels"]]
    assert train.labels.tolist() == labels
    assert list(root.iterdir()) == [root / "cifar-10-python.tar.gz"]


def test_corrupt_cifar_batch_raises_value_error_naming_the_file(tmp_path):
    write_cifar_batches(tmp_path, cifar_batches(seed=4))
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 python batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False)


def test_png_image_folder_round_trips_pixels_and_labels_in_the_documented_order(tmp_path):
    files = image_folder_files(seed=5, fmt="PNG")
    write_image_folder(tmp_path / "cifar10-jpeg", files, "PNG")
    for split in ("train", "test"):
        loaded = load_dataset("cifar10", split, data_dir=tmp_path, download=False)
        images, labels = expected_images(files, split)
        pixels = (loaded.images * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(pixels, images)
        np.testing.assert_array_equal(loaded.labels, labels)
    assert sorted(set(loaded.labels.tolist())) == [0, 3, 9]  # airplane, cat, truck


def test_jpeg_tarball_loads_only_the_requested_split(tmp_path):
    files = image_folder_files(seed=6, fmt="JPEG")
    write_image_folder(tmp_path / "src", files, "JPEG")
    make_tarball(tmp_path / "src", tmp_path / "cifar10-jpeg.tar.gz", "cifar10-jpeg")
    loaded = load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    images, labels = expected_images(files, "test")
    assert loaded.images.shape == (3, 3, 32, 32) and loaded.images.dtype == torch.float32
    np.testing.assert_array_equal(loaded.labels, labels)
    np.testing.assert_allclose(loaded.images.numpy() * 255, images, atol=3)


def test_unknown_class_folder_raises_value_error(tmp_path):
    write_image_folder(tmp_path, image_folder_files(seed=7, fmt="PNG"), "PNG")
    (tmp_path / "train" / "unicorn").mkdir()
    (tmp_path / "train" / "unicorn" / "0.png").write_bytes(
        encode_image(np.zeros((32, 32, 3), np.uint8), "PNG")
    )
    with pytest.raises(ValueError, match="'unicorn' is not a CIFAR-10 class"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_decoded_images_come_from_the_cache_on_the_second_load(tmp_path, monkeypatch):
    files = image_folder_files(seed=8, fmt="JPEG")
    write_image_folder(tmp_path / "src", files, "JPEG")
    tar_path = tmp_path / "cifar10-jpeg.tar.gz"
    make_tarball(tmp_path / "src", tar_path, "cifar10-jpeg")
    messages: list[str] = []
    first = load_dataset("cifar10", "train", data_dir=tmp_path, progress=messages.append)
    assert any("decoding" in message for message in messages)
    assert list((tmp_path / "home" / ".cache" / "analogtorch" / "decoded").glob("*.npz"))

    def refuse(data: bytes, name: str) -> np.ndarray:
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(data, "_decode_image", refuse)
    second = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    os.utime(tar_path, ns=(0, 0))  # a changed source invalidates the cache
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("cifar10", "train", data_dir=tmp_path)


def test_data_dir_beats_env_which_beats_home_cache(tmp_path, monkeypatch):
    explicit, env, home = tmp_path / "explicit", tmp_path / "env", tmp_path / "home"
    arrays = {
        root: write_idx_dataset(root / "mnist", seed) for seed, root in enumerate((explicit, env))
    }
    arrays[home] = write_idx_dataset(home / ".cache" / "analogtorch" / "mnist", seed=9)
    monkeypatch.setenv("ANALOGTORCH_DATA", str(env))

    def labels_from(root: Path) -> np.ndarray:
        return arrays[root]["train-labels-idx1-ubyte"]

    np.testing.assert_array_equal(
        load_dataset("mnist", data_dir=explicit).labels, labels_from(explicit)
    )
    np.testing.assert_array_equal(load_dataset("mnist").labels, labels_from(env))
    monkeypatch.delenv("ANALOGTORCH_DATA")
    np.testing.assert_array_equal(load_dataset("mnist").labels, labels_from(home))


def test_missing_dataset_without_download_lists_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALOGTORCH_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "mine", download=False)
    message = str(error.value)
    assert "Fashion-MNIST (test split) not found" in message
    assert "t10k-images-idx3-ubyte[.gz]" in message and "download=False" in message
    roots = [
        tmp_path / "mine",
        tmp_path / "env",
        tmp_path / "home" / ".cache" / "analogtorch",
        tmp_path / "system",
    ]
    where = message.split(" in ", 1)[1].split(" subfolders")[0]
    assert where.split(" and their ")[0].split(", ") == [str(root) for root in roots]
    assert where.split(" and their ")[1] == "fashion-mnist/, FashionMNIST/raw/"
    assert "apt-get install dataset-fashion-mnist" in message
    assert "\n" not in message  # the command line prints it as its one error line


def test_failed_download_becomes_file_not_found_with_the_reason(tmp_path, monkeypatch):
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match=r"(?s)CIFAR-10 \(train.*failed: .*no network"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not list((tmp_path / "home" / ".cache" / "analogtorch" / "cifar10").iterdir())


def test_download_with_wrong_checksum_raises_checksum_error_and_keeps_nothing(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"tampered"))
    with pytest.raises(ChecksumMismatchError, match="differs from the published"):
        load_dataset("mnist", data_dir=tmp_path)
    assert not list((tmp_path / "home" / ".cache" / "analogtorch" / "mnist").iterdir())


def test_unknown_name_or_split_raises_value_error_listing_choices():
    with pytest.raises(ValueError, match=r"name='imagenet'.*'mnist', 'fashion-mnist', 'cifar10'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"split='val'.*'train', 'test'"):
        load_dataset("mnist", "val")


def test_make_loader_order_depends_only_on_the_seed():
    split = Split(images=torch.rand(20, 1, 2, 2), labels=torch.arange(20))

    def order(seed: int, shuffle: bool = True) -> list[int]:
        loader = data.make_loader(split, batch_size=6, shuffle=shuffle, seed=seed)
        return torch.cat([labels for _, labels in loader]).tolist()

    torch.manual_seed(0)
    first = order(seed=1)
    torch.manual_seed(123)  # the global RNG must not matter
    assert order(seed=1) == first and sorted(first) == list(range(20))
    assert order(seed=2) != first
    assert order(seed=1, shuffle=False) == list(range(20))


def test_progress_messages_go_to_the_callback_not_stdout(tmp_path, capsys):
    write_idx_dataset(tmp_path, seed=0)
    messages: list[str] = []
    load_dataset("mnist", data_dir=tmp_path, progress=messages.append)
    assert messages and capsys.readouterr().out == ""


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST not present at {SHARED_MNIST}")
def test_real_mnist_first_train_labels():
    mnist = load_dataset("mnist", "train", data_dir=SHARED_MNIST.parent, download=False)
    assert mnist.images.shape == (60000, 1, 28, 28)
    assert mnist.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_a_dataset_is_decoded_once_per_process_and_reread_when_its_files_change(
    tmp_path, monkeypatch
):
    directory = tmp_path / "mnist"
    write_idx_dataset(directory, seed=0)
    calls = []
    reader = data._READERS["idx"]
    monkeypatch.setitem(data._READERS, "idx", lambda *args: calls.append(1) or reader(*args))
    first = load_dataset("mnist", "train", data_dir=tmp_path, download=False)
    second = load_dataset("mnist", "train", data_dir=tmp_path, download=False)
    assert len(calls) == 1
    assert torch.equal(first.images, second.images)
    first.images.zero_()  # callers get their own tensors, never the cached arrays
    assert load_dataset("mnist", "train", data_dir=tmp_path, download=False).images.any()
    arrays = write_idx_dataset(directory, seed=1)  # the files change: decoded again
    third = load_dataset("mnist", "train", data_dir=tmp_path, download=False)
    assert len(calls) == 2
    expected = arrays["train-images-idx3-ubyte"][:, None].astype(np.float32) / 255
    assert torch.equal(third.images, torch.from_numpy(expected))


class _RunsACommand:
    """A pickle payload that runs a shell command when loaded by plain pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["labels", "data", "top"])
def test_a_cifar_batch_that_would_run_code_is_refused_without_running_it(tmp_path, where):
    marker = tmp_path / "pwned"
    batches = cifar_batches(seed=0)
    payload = _RunsACommand(marker)
    if where == "top":
        batches["data_batch_1"] = payload  # type: ignore[assignment]
    else:
        batches["data_batch_1"][where.encode()] = payload
    write_cifar_batches(tmp_path / "cifar-10-batches-py", batches)
    with pytest.raises(ValueError, match=r"os\.system|posix\.system|not allowed"):
        load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    assert not marker.exists()


def test_another_decoding_is_other_data_for_the_cache_and_the_run_fingerprint(
    tmp_path, monkeypatch
):
    files = image_folder_files(seed=8, fmt="JPEG")
    write_image_folder(tmp_path / "src", files, "JPEG")
    make_tarball(tmp_path / "src", tmp_path / "cifar10-jpeg.tar.gz", "cifar10-jpeg")
    load_dataset("cifar10", "train", data_dir=tmp_path)
    before = data.dataset_fingerprint("cifar10", tmp_path)
    monkeypatch.setattr(data, "DECODING", "order=class-sorted")  # a change to decoding
    monkeypatch.setattr(data, "_DECODED", {})  # a new process
    messages: list[str] = []
    load_dataset("cifar10", "train", data_dir=tmp_path, progress=messages.append)
    assert any("decoding" in message for message in messages)  # the old cache is not used
    assert data.dataset_fingerprint("cifar10", tmp_path) != before  # nor an old run folder
