"""The one run engine: every command writes its results into a run folder through it.

A run folder holds, for every command alike:

* ``config.yaml`` — the resolved configuration, as run;
* ``fingerprint.json`` — the SHA-256 of that configuration, the package version and the
  identity of the data it read (:func:`analogtorch.data.dataset_fingerprint`);
* ``report.md``, ``summary.json``, ``results.csv`` and PNG plots — the results;
* ``cells/<key>.json`` — the finished cells of a study (:func:`run_cells`).

Opening a run (:func:`open_run`) resumes a folder whose fingerprint is the same, and refuses
one whose fingerprint differs with a one-line :class:`RunConflictError` naming the keys that
differ — so results computed under another configuration, version or dataset are never
mixed into a report — unless ``overwrite=True``, which empties the folder first. A lock file
keeps a second process from writing the same folder at the same time. Every file written
through the engine is written atomically (a temporary file, then a rename).

The default folder is ``runs/<command>-<name>-<first 8 hex digits of the config hash>``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .data import dataset_fingerprint, dataset_root, is_file_dataset
from .files import write_atomic, write_json
from .progress import progress_bar

Cell = tuple[str, dict[str, Any]]
FINGERPRINT = "fingerprint.json"
LOCK = "run.lock"


def config_datasets(config: Mapping[str, Any]) -> str | list[str] | None:
    """The data a study config reads: its ``dataset``, its ``task``, or its ``tasks`` list."""
    return config.get("dataset") or config.get("task") or config.get("tasks")


def data_identity(
    name: str | Sequence[str] | None, data_dir: str | Path | None = None
) -> str | None:
    """The data part of a fingerprint: ``dataset_fingerprint`` for a dataset read from files,
    the name itself for data that is generated or bundled (``digits``, the physics tasks).
    For a list of tasks, the fingerprints of the file datasets among them joined by ``+``
    (``None`` when all are generated, as for a list before image tasks could join one)."""
    if name is None:
        return None
    if not isinstance(name, str):
        files = [dataset_fingerprint(n, data_dir) for n in name if is_file_dataset(n)]
        return "+".join(files) or None
    try:
        return dataset_fingerprint(name, data_dir)
    except ValueError:  # not a file dataset
        return str(name)


def resolve_data_dir(name: str | Sequence[str] | None, data_dir: str | Path | None) -> Path | None:
    """The folder a run reads ``name`` from, absolute (:func:`~.data.dataset_root`), so cells
    computed in other processes read the same files; ``data_dir`` unchanged for data that is
    generated or bundled. For a list of tasks, the folder of its first file dataset."""
    if name is not None and not isinstance(name, str):
        name = next((n for n in name if is_file_dataset(n)), None)
    if name is None:
        return None if data_dir is None else Path(data_dir).absolute()
    try:
        return dataset_root(name, data_dir)
    except ValueError:  # not a file dataset
        return None if data_dir is None else Path(data_dir).absolute()


class RunConflictError(ValueError):
    """A run folder holds results of another configuration, version or dataset."""


class RunLockedError(OSError):
    """Another process is writing the run folder (the command line says so in one line)."""


def package_version() -> str:
    try:
        return metadata.version("analogtorch")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "unknown"


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of a configuration's canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@dataclass
class RunFolder:
    """An open run folder (see the module docstring); ``path`` is where files go."""

    command: str
    name: str
    config: dict[str, Any]
    path: Path
    fingerprint: dict[str, Any]
    resumed: bool

    def file(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return write_atomic(self.file(name), text)

    def write_json(self, name: str, record: Any) -> Path:
        return write_json(self.file(name), record)

    def write_csv(self, name: str, rows: Sequence[Mapping[str, Any]]) -> Path:
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return self.write_text(name, buffer.getvalue())


def _changed_keys(folder: Path, config: Mapping[str, Any]) -> list[str]:
    """The keys where ``config`` differs from the one stored in ``folder/config.yaml``."""
    config_file = folder / "config.yaml"
    stored_config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    return _differences(stored_config or {}, config)


def _prepare(
    folder: Path, fingerprint: dict[str, Any], config: dict[str, Any], overwrite: bool
) -> bool:
    """Check (or clear) an existing folder; True when it is resumed."""
    stored_path = folder / FINGERPRINT
    contents = [p for p in folder.iterdir() if p.name != LOCK]
    if overwrite:
        for entry in contents:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return False
    if not stored_path.exists():
        if contents:
            raise RunConflictError(
                f"{folder} is not empty and was not written by an analogtorch run: give "
                "another --out, or --overwrite to empty it"
            )
        return False
    stored = json.loads(stored_path.read_text())
    if stored == fingerprint:
        return True
    keys = _changed_keys(folder, config)
    what = [f"config keys {', '.join(keys)}"] if keys else []
    for part in ("command", "version", "data"):
        if stored.get(part) != fingerprint.get(part):
            what.append(f"the {part} ({stored.get(part)} -> {fingerprint.get(part)})")
    was, now = stored.get("device", "cpu"), fingerprint.get("device", "cpu")
    if was != now:
        what.append(f"the device ({was} -> {now})")
    raise RunConflictError(
        f"{folder} holds results of another run ({'; '.join(what) or 'fingerprint'} differ): "
        "give another --out, or --overwrite to start it again"
    )


def check_run(folder: str | Path, command: str, config: Mapping[str, Any]) -> Path:
    """``folder`` when it holds a run of ``command`` on ``config`` (for reading it, e.g. to
    export a trained model); else a one-line :class:`RunConflictError`."""
    folder = Path(folder)
    stored_path = folder / FINGERPRINT
    if not stored_path.is_file():
        raise RunConflictError(f"{folder} is not an analogtorch run folder (no {FINGERPRINT})")
    stored = json.loads(stored_path.read_text())
    config = json.loads(json.dumps(dict(config), default=str))
    if stored.get("command") == command and stored.get("config") == config_hash(config):
        return folder
    keys = _changed_keys(folder, config)
    what = f"config keys {', '.join(keys)} differ" if keys else f"command {stored.get('command')}"
    raise RunConflictError(f"{folder} holds another run ({what}): give the study it ran")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLockedError(
                f"{folder} is being written by another analogtorch process (pid {holder}); "
                "wait for it to finish or give another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def open_run(
    command: str,
    name: str,
    config: Mapping[str, Any],
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    data: Any = None,
    runs_dir: str | Path = "runs",
    device: str = "cpu",
) -> Iterator[RunFolder]:
    """Open (create, resume or refuse) the run folder of ``command`` on ``config``.

    Args:
        command: the command's name (``study``, ``demo``, ``deq-train``, ...).
        name: the run's name (a study's name, a task, a model).
        config: the resolved configuration (plain YAML/JSON data).
        out: the folder; default ``runs_dir/<command>-<name>-<hash8>``.
        overwrite: empty an existing folder instead of refusing a different fingerprint.
        data: the identity of the data read (e.g. :func:`~.data.dataset_fingerprint`).
        device: where the run computes. A device other than the CPU joins the fingerprint
            (float sums and read-noise draws differ by device: one run's cells all come
            from one device); a CPU run's fingerprint has no device key.
    """
    config = json.loads(json.dumps(dict(config), default=str))  # plain data, as stored
    digest = config_hash(config)
    folder = Path(out) if out is not None else Path(runs_dir) / f"{command}-{name}-{digest[:8]}"
    folder = folder.absolute()  # the same folder for cells computed elsewhere (Ray workers)
    fingerprint = {"command": command, "config": digest, "version": package_version(), "data": data}
    if device != "cpu":
        fingerprint["device"] = device
    fingerprint = json.loads(json.dumps(fingerprint, default=str))  # as stored and read back
    if folder.exists() and not folder.is_dir():
        raise RunConflictError(f"{folder} is a file, not a run folder: give another --out")
    with _locked(folder):
        resumed = _prepare(folder, fingerprint, config, overwrite)
        write_atomic(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        write_atomic(folder / FINGERPRINT, json.dumps(fingerprint, indent=1, default=str))
        yield RunFolder(command, name, config, folder, fingerprint, resumed)


# -- resumable cells ------------------------------------------------------------------------


_CELL_KEY = re.compile(r"^[A-Za-z0-9._=+-]+$")


def cell_path(out_dir: Path, key: str) -> Path:
    """Where the finished cell ``key`` is kept (keys are safe file names: ASCII letters,
    digits and ``._=+-``)."""
    if not _CELL_KEY.match(key):
        raise ValueError(f"cell key {key!r}: use ASCII letters, digits and ._=+- only")
    return out_dir / "cells" / f"{key}.json"


def run_cells(
    cells: Sequence[Cell],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    out_dir: str | Path,
    *,
    backend: str = "local",
    label: str = "study",
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell not yet on disk; returns all records (finished ones read back), in
    the order of ``cells``. Each record is ``{"key": key, **params, **run(params)}``,
    written atomically to ``out_dir/cells/<key>.json`` as soon as it is finished."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend={backend!r}: use 'local' or 'ray'")
    out_dir = Path(out_dir)
    keys = [key for key, _ in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("cell keys must be unique")
    todo = []
    for key, params in cells:
        path = cell_path(out_dir, key)
        if not path.exists():
            todo.append((key, params))
            continue
        stored = json.loads(path.read_text())
        changed = {k: (stored.get(k), v) for k, v in params.items() if stored.get(k) != v}
        if changed:
            raise RunConflictError(
                f"{path} was computed with other parameters {changed} (stored, now): remove it "
                "or use another output folder"
            )
    with progress_bar(show_progress) as bar:
        task = bar.add_task(label, total=len(cells), completed=len(cells) - len(todo))

        def finished(key: str, params: dict[str, Any], result: dict[str, Any]) -> None:
            record = {"key": key, **params, **result}
            write_atomic(cell_path(out_dir, key), json.dumps(record, indent=1, sort_keys=True))
            bar.advance(task)

        if backend == "ray":
            from .ray_backend import run_on_ray

            run_on_ray(todo, run, finished, out_dir / "logs")
        else:
            for key, params in todo:
                finished(key, params, run(params))
    return [json.loads(cell_path(out_dir, k).read_text()) for k in keys]
