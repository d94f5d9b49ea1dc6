"""A chip's programmed conductances as files: :func:`export_conductances` writes them,
:func:`read_conductances` builds a :class:`MeasuredChip` from measured (or exported) ones.

A conductance set is a directory of two files. ``conductances.npz`` holds float64 arrays,
named by the layer's qualified name in the model (``""`` for a model that is itself one
analog layer) and the row tile ``k = 0, 1, ...``::

    <layer>/tile<k>/g_plus     (out, rows_per_tile)  G+ of the tile's devices
    <layer>/tile<k>/g_minus    (out, rows_per_tile)  G-
    <layer>/tile<k>/nu_plus    (out, rows_per_tile)  drift exponents of G+ and G-, present
    <layer>/tile<k>/nu_minus   (out, rows_per_tile)  iff the manifest's drift_exponents
    <layer>/scale              (out,)                per-output-row digital scale

Tile ``k`` holds inputs ``k * rows_per_tile, ...`` of the flattened weight (out, in) or
(out, in/groups * kh * kw), as :class:`~.tiling.RowTiling` lays them out (a convolution's
input channel with all its kernel taps in one tile). The last tile's word lines past
``n_rows`` are unused (driven at 0 V, empty in the circuit model): their values are ignored.
Conductances are in siemens (``units: "siemens"``, what an export writes) or in units of the
profile's ``g_max`` (``units: "g_max"``), and the digital weight a pair stores is

    W_ji = scale_j (G+_ji - G-_ji)

so ``scale`` is in weight units per siemens (per g_max). At ``t`` seconds after programming a
device reads ``G (max(t, t0) / t0)^(-nu) (1 + mu(t))`` (the profile's drift law), and the
profile's circuit effects, converters, read noise and drift compensation act as on any
:class:`~.chip.Chip`.

``manifest.json`` holds ``format`` (:data:`FORMAT`), ``profile`` (the
:class:`~.profile.HardwareProfile`), ``chip_seed`` (seeds the read noise, so a re-imported
export draws the same read noise as the chip it came from), ``units``,
``drift_exponents``, ``arrays_sha256`` (SHA-256 of ``conductances.npz``: optional, checked
when present, so a manifest never pairs with arrays from another write) and ``layers``: per
analog layer, in model order, the ``weight_shape`` its weights must have as the crossbar
holds them (``layer.crossbar_weight()``, output-major: the torch weight's shape except for a
transposed convolution) and its ``tiling`` (``n_rows``, ``n_tiles``, ``rows_per_tile``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from torch import nn

from ..files import write_atomic, write_json
from .chip import Chip, ProgrammedLayer
from .errors import explain
from .noise import sample_drift_exponents
from .profile import HardwareProfile
from .random import derive_seed
from .tiling import RowTiling

FORMAT = "analogtorch-conductances/1"
ARRAYS_FILE = "conductances.npz"
MANIFEST_FILE = "manifest.json"
_CONDUCTANCES = ("g_plus", "g_minus")
_DRIFT_EXPONENTS = ("nu_plus", "nu_minus")


class TilingEntry(BaseModel):
    """A layer's :class:`~.tiling.RowTiling` in the manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_rows: PositiveInt
    n_tiles: PositiveInt
    rows_per_tile: PositiveInt


class LayerEntry(BaseModel):
    """One analog layer of the manifest: the weight shape it expects and its row tiles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_shape: tuple[PositiveInt, ...] = Field(min_length=2)
    tiling: TilingEntry

    @model_validator(mode="after")
    def _check_tiling(self) -> LayerEntry:
        t, n_rows = self.tiling, math.prod(self.weight_shape[1:])
        if t.n_rows != n_rows:
            raise ValueError(
                f"tiling.n_rows={t.n_rows}, but weight_shape {list(self.weight_shape)} has "
                f"{n_rows} inputs per output"
            )
        if not (t.n_tiles - 1) * t.rows_per_tile < n_rows <= t.n_tiles * t.rows_per_tile:
            raise ValueError(
                f"{t.n_tiles} tiles of {t.rows_per_tile} rows do not hold {n_rows} rows "
                "without an empty tile"
            )
        return self

    @property
    def row_tiling(self) -> RowTiling:
        return RowTiling(**self.tiling.model_dump())


class ConductanceManifest(BaseModel):
    """``manifest.json`` of a conductance set (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["analogtorch-conductances/1"]
    profile: HardwareProfile
    chip_seed: int
    units: Literal["siemens", "g_max"]
    drift_exponents: bool
    arrays_sha256: str | None = None
    layers: dict[str, LayerEntry] = Field(min_length=1)


@dataclass(frozen=True)
class MeasuredLayer:
    """One layer of a conductance set: its expected weight shape and its device state
    (conductances in units of g_max, row scale in weight units per g_max, float64, CPU)."""

    weight_shape: tuple[int, ...]
    state: ProgrammedLayer


class MeasuredChip(Chip):
    """A :class:`~.chip.Chip` whose programmed state is a conductance set, not a draw.

    ``deploy`` reads the set's devices (no programming noise, mismatch or stuck devices are
    drawn), through the profile's drift, circuit, converters and read noise at time ``t``,
    with read noise seeded by ``seed`` as on any chip. The set is what the array holds, so
    the model's weight values are not used and changing them reprograms nothing; the
    model's analog layers must match the set's by name, weight shape and tiling, otherwise
    ``deploy`` raises naming the layer.
    """

    def __init__(
        self,
        profile: HardwareProfile,
        seed: int,
        layers: Mapping[str, MeasuredLayer],
        source: str,
    ) -> None:
        super().__init__(profile, seed)
        self.measured_layers = dict(layers)
        self.source = source

    def __repr__(self) -> str:
        return f"MeasuredChip(profile={self.profile.name!r}, seed={self.seed}, {self.source!r})"

    def program_layer(self, name: str, weight: torch.Tensor, tiling: RowTiling) -> ProgrammedLayer:
        """The measured state of the layer called ``name``, on ``weight``'s device and dtype;
        ``weight`` must have the shape the set expects (its values are not used)."""
        measured = self.measured_layers.get(name)
        if measured is None:
            raise ValueError(
                f"{self!r}: the model's analog layer {name!r} is not in the conductance set, "
                f"which holds layers {list(self.measured_layers)}"
            )
        if tuple(weight.shape) != measured.weight_shape:
            raise ValueError(
                f"{self!r}: layer {name!r} has weights of shape {tuple(weight.shape)}, the "
                f"conductance set expects {measured.weight_shape}"
            )
        if tiling != measured.state.tiling:
            raise ValueError(
                f"{self!r}: layer {name!r} is tiled as {tiling} with tile_rows="
                f"{self.profile.tile_rows}, the conductance set as {measured.state.tiling}; "
                "use a profile with the set's tile_rows"
            )
        s = measured.state
        tensors = (s.g_plus, s.g_minus, s.nu_plus, s.nu_minus, s.scale)
        return ProgrammedLayer(*(t.to(weight.device, weight.dtype) for t in tensors), s.tiling)

    @contextmanager
    def deploy(self, model: nn.Module, time_s: float = 0.0) -> Iterator[nn.Module]:
        """:meth:`Chip.deploy` on the measured devices, after checking that the model has
        every layer of the set (its extra layers are refused by :meth:`program_layer`)."""
        from ..nn.base import analog_layers  # nn/ sits above hardware/: at call time, as in Chip

        present = analog_layers(model)
        missing = [name for name in self.measured_layers if name not in present]
        if missing:
            raise ValueError(
                f"{self!r}: the conductance set has layers {missing} that the model's analog "
                "layers do not include"
            )
        with super().deploy(model, time_s) as deployed:
            yield deployed


def export_conductances(chip: Chip, model: nn.Module, path: str | Path) -> Path:
    """Write the state of ``model``'s analog layers on ``chip`` to the directory ``path``.

    Each layer is programmed as :meth:`Chip.deploy` programs it (its crossbar weights,
    drawn once from the chip's seed and the layer's name) and written in siemens with its
    drift exponents. The arrays are written first, then the manifest naming their SHA-256,
    each atomically. Returns the directory.
    """
    from ..nn.base import analog_layers  # nn/ sits above hardware/: at call time, as in Chip

    layers = analog_layers(model)
    if not layers:
        raise ValueError(
            "export: the model has no analog layers; convert it with analogtorch.convert"
        )
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"export: {directory} is a file; give a directory for the conductance set")
    if chip.layer_profiles is not None and any(
        chip.profile_of(name) != chip.profile for name in layers
    ):
        raise ValueError(
            "export: this chip reads its layers at different profiles; a conductance set "
            "holds one profile: export a one-profile chip"
        )
    g_max = chip.profile.g_max_siemens
    arrays: dict[str, np.ndarray] = {}
    entries: dict[str, LayerEntry] = {}
    with torch.no_grad():
        for name, layer in layers.items():
            weight, tiling = layer.crossbar_weight(), layer.row_tiling(chip.profile)
            state = chip.program_layer(name, weight, tiling)
            arrays.update(_layer_arrays(name, state, g_max))
            entries[name] = LayerEntry(
                weight_shape=tuple(weight.shape), tiling=TilingEntry(**asdict(tiling))
            )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    manifest = ConductanceManifest(
        format=FORMAT,
        profile=chip.profile,
        chip_seed=chip.seed,
        units="siemens",
        drift_exponents=True,
        arrays_sha256=hashlib.sha256(data).hexdigest(),
        layers=entries,
    )
    write_atomic(directory / ARRAYS_FILE, data)
    write_json(directory / MANIFEST_FILE, manifest.model_dump(mode="json"))
    return directory


def _layer_arrays(name: str, state: ProgrammedLayer, g_max: float) -> dict[str, np.ndarray]:
    """One layer's arrays in file units: G in siemens (``G = g g_max``), scale per siemens."""
    scale = state.scale.detach().to("cpu", torch.float64).reshape(-1) / g_max
    arrays = {f"{name}/scale": scale.numpy()}
    for field in _CONDUCTANCES + _DRIFT_EXPONENTS:
        unit = g_max if field in _CONDUCTANCES else 1.0
        values = getattr(state, field).detach().to("cpu", torch.float64)
        tiles = state.tiling.pad(values) * unit  # (out, n_tiles, rows_per_tile)
        for k in range(state.tiling.n_tiles):
            arrays[f"{name}/tile{k}/{field}"] = tiles[:, k].numpy()
    return arrays


def read_conductances(path: str | Path, profile: HardwareProfile | None = None) -> MeasuredChip:
    """The chip whose state is the conductance set in the directory ``path``.

    Args:
        path: a directory written by :func:`export_conductances` or by hand (module docstring).
        profile: the hardware read through (drift law, circuit, converters, read noise);
            default the manifest's. Siemens are normalised by its ``g_max_siemens``.

    Drift exponents come from the set when its manifest says ``drift_exponents: true``;
    otherwise they are drawn from ``profile`` (``nu ~ N(drift_nu_mean, drift_nu_std)``,
    clipped at 0; all zero, no drift, when both are 0) with a generator seeded by the chip
    seed and the layer name. Raises ``ValueError`` naming the file and entry for a missing,
    extra or misshapen array, a non-finite value, a negative conductance or a row scale <= 0.
    """
    if profile is not None and not isinstance(profile, HardwareProfile):
        raise TypeError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
    directory = Path(path)
    manifest = _read_manifest(directory / MANIFEST_FILE)
    arrays_path = directory / ARRAYS_FILE
    if not arrays_path.is_file():
        raise FileNotFoundError(f"conductance set {directory}: {ARRAYS_FILE} does not exist")
    data = arrays_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if manifest.arrays_sha256 is not None and digest != manifest.arrays_sha256:
        raise ValueError(
            f"{arrays_path}: SHA-256 {digest} differs from the manifest's arrays_sha256 "
            f"{manifest.arrays_sha256}: the arrays and the manifest come from different writes"
        )
    arrays = _load_arrays(arrays_path, data)
    _check_names(arrays_path, arrays, manifest)
    profile = profile if profile is not None else manifest.profile
    g_unit = profile.g_max_siemens if manifest.units == "siemens" else 1.0
    layers = {
        name: _measured_layer(arrays_path, arrays, name, entry, manifest, profile, g_unit)
        for name, entry in manifest.layers.items()
    }
    return MeasuredChip(profile, manifest.chip_seed, layers, source=str(directory))


def _read_manifest(path: Path) -> ConductanceManifest:
    if not path.is_file():
        raise FileNotFoundError(f"conductance set {path.parent}: {path.name} does not exist")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    try:
        return ConductanceManifest(**record)
    except ValidationError as err:
        raise ValueError(
            f"{path}: {explain(err, 'conductance manifest', ConductanceManifest, 'key')}"
        ) from None


def _load_arrays(path: Path, data: bytes) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` bytes (no pickled objects are read)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a NumPy .npz of plain arrays ({err})") from None


def _expected_names(name: str, entry: LayerEntry, drift_exponents: bool) -> list[str]:
    fields = _CONDUCTANCES + (_DRIFT_EXPONENTS if drift_exponents else ())
    tiles = range(entry.tiling.n_tiles)
    return [f"{name}/scale"] + [f"{name}/tile{k}/{f}" for k in tiles for f in fields]


def _check_names(
    path: Path, arrays: Mapping[str, np.ndarray], manifest: ConductanceManifest
) -> None:
    expected = [
        key
        for name, entry in manifest.layers.items()
        for key in _expected_names(name, entry, manifest.drift_exponents)
    ]
    missing = [key for key in expected if key not in arrays]
    if missing:
        raise ValueError(
            f"{path}: missing array(s) {missing[:8]}{' ...' if len(missing) > 8 else ''} that "
            "the manifest's layers, tiles and drift_exponents call for"
        )
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise ValueError(
            f"{path}: array(s) {extra[:8]} are not in the manifest's layers, tiles and "
            f"drift_exponents={manifest.drift_exponents}; remove them or fix the manifest"
        )


def _finite_array(
    path: Path, arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]
) -> np.ndarray:
    """``arrays[key]`` as float64, refused unless real, finite and of ``shape``."""
    value = arrays[key]
    if value.dtype.kind not in "fiu":
        raise ValueError(f"{path} entry {key!r}: dtype {value.dtype}; expected real numbers")
    if value.shape != shape:
        raise ValueError(f"{path} entry {key!r}: shape {value.shape}, the manifest implies {shape}")
    value = value.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(value)))
    if bad:
        raise ValueError(f"{path} entry {key!r}: {bad} non-finite value(s) (NaN or inf)")
    return value


def _measured_layer(
    path: Path,
    arrays: Mapping[str, np.ndarray],
    name: str,
    entry: LayerEntry,
    manifest: ConductanceManifest,
    profile: HardwareProfile,
    g_unit: float,
) -> MeasuredLayer:
    """One layer's checked state: ``g = G / g_unit``, ``s = scale * g_unit``, per tile
    joined into (out, n_rows)."""
    tiling, out = entry.row_tiling, entry.weight_shape[0]
    tile_shape = (out, tiling.rows_per_tile)

    def joined(field: str) -> torch.Tensor:
        tiles = []
        for k in range(tiling.n_tiles):
            key = f"{name}/tile{k}/{field}"
            value = _finite_array(path, arrays, key, tile_shape)
            negative = int(np.count_nonzero(value < 0))
            if field in _CONDUCTANCES and negative:
                raise ValueError(
                    f"{path} entry {key!r}: {negative} negative conductance(s) (min "
                    f"{value.min():.3g}); conductances are >= 0"
                )
            tiles.append(torch.from_numpy(value))
        return tiling.unpad(torch.stack(tiles, dim=1))

    scale_key = f"{name}/scale"
    scale = _finite_array(path, arrays, scale_key, (out,))
    if (scale <= 0).any():
        raise ValueError(
            f"{path} entry {scale_key!r}: row scales must be > 0, min {scale.min():.3g}"
        )
    g_plus, g_minus = (joined(field) / g_unit for field in _CONDUCTANCES)
    if manifest.drift_exponents:
        nu_plus, nu_minus = (joined(field) for field in _DRIFT_EXPONENTS)
    else:
        gen = torch.Generator().manual_seed(derive_seed(manifest.chip_seed, "drift", name))
        nu_plus, nu_minus = (
            sample_drift_exponents(profile, g_plus.shape, gen).double() for _ in range(2)
        )
    s = torch.from_numpy(scale * g_unit).reshape(out, 1)
    state = ProgrammedLayer(g_plus, g_minus, nu_plus, nu_minus, s, tiling)
    return MeasuredLayer(entry.weight_shape, state)
