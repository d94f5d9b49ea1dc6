"""Studies on an existing Ray cluster: started here in a subprocess (``ray start --head``)
with a scrubbed environment, so the workers know nothing the driver knows (no
``ANALOGTORCH_DATA``, another home folder). The driver resolves the data and the run folder,
the cells run on the cluster, the records come back to the driver's run folder, and a cell
that raises is one error line naming it, with its traceback in the run folder."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray")

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_mnist(folder: Path) -> None:
    """IDX files of a tiny MNIST-shaped dataset (64 train, 32 test images)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, count in (("train", 64), ("t10k", 32)):
        for stem, array in (
            ("images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), np.uint8)),
            ("labels-idx1-ubyte", rng.integers(0, 10, count, np.uint8)),
        ):
            header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
                f">{array.ndim}I", *array.shape
            )
            (folder / f"{prefix}-{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster in its own process group, with a scrubbed environment."""
    home = tmp_path_factory.mktemp("worker-home")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    port = _free_port()
    start = [
        RAY,
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--disable-usage-stats",
        "--include-dashboard=false",
        "--object-store-memory=150000000",
    ]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _study(tmp_path: Path, name: str, **changes) -> Path:
    config = {
        "dataset": "mnist",
        "model": "mnist-mlp",
        "train": {"epochs": 1, "finetune_epochs": 1, "batch_size": 32},
        "methods": ["fp32", "noise-injection"],
        "seeds": [0],
        "eval": {"chips": 2, "bits": [4], "noise_scales": [0.0, 1.0], "times": [1.0]},
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _driver(args: list[str], address: str, data: Path, cwd: Path):
    env = {**os.environ, "RAY_ADDRESS": address, "ANALOGTORCH_DATA": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "analogtorch", "--quiet", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_study_runs_on_an_existing_cluster_and_comes_back_to_the_driver(cluster, tmp_path):
    _write_mnist(tmp_path / "data" / "mnist")
    config = _study(tmp_path, "tiny")
    started = time.perf_counter()
    done = _driver(
        ["study", str(config), "--backend", "ray", "--out", "out"],
        cluster,
        tmp_path / "data",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == [
        "fp32-seed0.json",
        "noise-injection-seed0.json",
    ]
    assert (out / "report.md").exists() and (out / "results.csv").exists()
    print(f"ray study: {time.perf_counter() - started:.1f} s")


def test_a_cell_that_fails_on_the_cluster_is_one_line_naming_it(cluster, tmp_path):
    _write_mnist(tmp_path / "data" / "mnist")
    failing = {"label": "pi-residual", "method": "physics-informed", "options": {"residual": True}}
    config = _study(tmp_path, "broken", model="mnist-cnn", methods=["fp32", failing])
    done = _driver(
        ["study", str(config), "--backend", "ray", "--out", "out"],
        cluster,
        tmp_path / "data",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 1 of 2 cells failed"), done.stderr
    assert "pi-residual-seed0 (ValueError: residual=True needs" in lines[0]
    log = tmp_path / "out" / "logs" / "pi-residual-seed0.log"
    text = log.read_text()
    assert "Traceback" in text and 'File "' in text and "ValueError: residual=True" in text
    assert (tmp_path / "out" / "cells" / "fp32-seed0.json").exists()  # the others are kept
