"""`save` / `load`: a trained analog model as one file, with no pickled code.

The file is a ``torch.save`` of plain data only (``torch.load(weights_only=True)`` reads
it, so loading never runs code from the file):

* ``format`` — ``"analogtorch-model/1"``; ``version`` — the package version that wrote it;
* ``arch`` — the registered architecture (:data:`analogtorch.models.MODELS`) or ``None``;
* ``normalized`` — whether the model is a :class:`~.models.normalize.NormalizedInput`
  around the architecture (inputs in [0, 1], normalisation inside);
* ``layers`` — per analog layer (qualified name): its ``HardwareProfile`` as JSON and its
  training-noise seed;
* ``state_dict`` — weights, biases, BatchNorm statistics and the learned DAC/ADC ranges;
* ``metadata`` — JSON-able facts the caller adds (accuracy, recipe, data).

:func:`load` rebuilds the architecture (by name, or from the digital ``model`` the caller
gives), converts the same layers with the stored profiles and loads the state strictly: a
file that does not match its architecture is an error naming the keys, never a silently
partial model.
"""

from __future__ import annotations

import glob
import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import write_atomic
from .hardware.profile import HardwareProfile
from .models import MODELS, build_model
from .models.normalize import NormalizedInput
from .nn.base import analog_layers
from .nn.convert import convert, convertible_layers
from .runs import package_version

FORMAT = "analogtorch-model/1"


def save(
    model: nn.Module,
    path: str | Path,
    *,
    arch: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (an analog model from :func:`~.nn.convert`) to ``path`` atomically.

    Args:
        arch: the registered architecture it was built from (``build_model(arch)``), so
            :func:`load` needs nothing else; without it, ``load`` needs the digital model.
        metadata: JSON-able facts stored beside the weights (e.g. accuracy, recipe).
    """
    layers = analog_layers(model)
    if not layers:
        raise ValueError("save: the model has no analog layers; convert it first")
    if arch is not None and arch not in MODELS:
        raise ValueError(f"save: unknown arch {arch!r}; known: {', '.join(MODELS)}")
    record = {
        "format": FORMAT,
        "version": package_version(),
        "arch": arch,
        "normalized": isinstance(model, NormalizedInput),
        "layers": {
            name: {"profile": layer.profile.model_dump_json(), "noise_seed": layer.noise_seed}
            for name, layer in layers.items()
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": json.dumps(metadata or {}),
    }
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return write_atomic(path, buffer.getvalue())


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"load: {path} does not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:  # code, or not torch
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"load: {path} is not an analogtorch model file ({first})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"load: {path} is not an analogtorch model file ({FORMAT}): {found!r}")
    return record


def load(path: str | Path, *, model: nn.Module | None = None) -> nn.Module:
    """The analog model stored at ``path``, in eval mode, ready for ``Chip.deploy``.

    Args:
        model: the digital architecture (freshly built, any weights) when the file was saved
            without ``arch``; with ``arch`` stored it may be left out.
    """
    path = Path(path)
    record = _read(path)
    if model is None:
        if record["arch"] is None:
            raise ValueError(f"load: {path} names no arch; pass the digital model: model=...")
        model, _ = build_model(record["arch"], seed=0)
    if record["normalized"] and not isinstance(model, NormalizedInput):
        stats = record["state_dict"]
        model = NormalizedInput(model, stats["mean"].flatten(), stats["std"].flatten())
    layers = {
        name: (HardwareProfile.model_validate_json(entry["profile"]), entry["noise_seed"])
        for name, entry in record["layers"].items()
    }
    # a layer convert makes analog may hold several analog layers (attention, LSTM): it
    # gets the profile stored for the first of them
    rules = {}
    for name in convertible_layers(model):
        inside = [n for n in layers if not name or n == name or n.startswith(f"{name}.")]
        if inside:
            rules[glob.escape(name)] = layers[inside[0]][0]
    model = convert(model, rules)
    own_layers = set(analog_layers(model))
    missing = sorted(set(layers) - own_layers)
    if missing:
        raise ValueError(f"load: {path} has analog layers {missing} the model does not have")
    extra = sorted(own_layers - set(layers))
    if extra:
        raise ValueError(f"load: the model has analog layers {extra} that {path} does not have")
    for name, layer in analog_layers(model).items():
        profile, seed = layers[name]
        layer.set_profile(profile)
        layer.reseed(seed)
    state = record["state_dict"]
    own = model.state_dict()
    # files written before layers saved their profile fingerprint lack "_extra_state"
    missing = sorted(k for k in own.keys() - state.keys() if not k.endswith("._extra_state"))
    unexpected = sorted(state.keys() - own.keys())
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"load: {path} does not match the model: missing {missing}, unexpected "
            f"{unexpected}, shapes (file vs model) {shapes}"
        )
    model.load_state_dict(state)
    return model.eval()


def metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata`` a model file was saved with."""
    return json.loads(_read(Path(path))["metadata"])
