"""`ChipScoreCache`: chip accuracies kept on disk as they are measured, so a long
evaluation (a CIFAR-10 network on tens of chips, an hour or more of CPU) interrupted by a
killed process resumes at the next chip instead of from the start.

The file holds one JSON object: ``context``, a digest of everything the scores depend on,
and ``scores``, the accuracy of each measurement by key (``"ideal"``, or noise scale, chip
seed and read time). The digest covers the model's parameters and buffers, every input and
label batch, the calibration batches and the hardware profile; a file written for anything
else (a retrained model, other data, another profile) is never read, and is overwritten by
the first new score. Each score is written atomically (temporary file and rename).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import write_json
from ..hardware.profile import HardwareProfile


def _update(digest: Any, tensor: torch.Tensor) -> None:
    """Feed ``tensor``'s dtype, shape and bytes to ``digest``."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"{flat.dtype}{tuple(tensor.shape)}".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())


def evaluation_context(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    profile: HardwareProfile,
    calibration: Sequence[torch.Tensor] | None,
    per_layer: bool,
) -> str:
    """A digest of what a chip's score depends on (module docstring)."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        _update(digest, value)
    for x, y in loader:
        _update(digest, x)
        _update(digest, y)
    for x in calibration or ():
        _update(digest, x)
    digest.update(profile.fingerprint.encode())
    digest.update(f"per_layer={per_layer}".encode())
    return digest.hexdigest()


class ChipScoreCache:
    """Scores by key in ``path``, valid for ``context`` only (module docstring)."""

    def __init__(self, path: str | Path, context: str) -> None:
        self.path = Path(path)
        self.context = context
        self.scores: dict[str, float] = {}
        if self.path.exists():
            try:
                record = json.loads(self.path.read_text())
            except (OSError, ValueError):
                record = {}  # unreadable: start over (the file is rewritten atomically)
            if isinstance(record, dict) and record.get("context") == context:
                self.scores = {str(k): float(v) for k, v in record["scores"].items()}

    @staticmethod
    def key(noise_scale: float, chip_seed: int, time_s: float) -> str:
        """The key of one chip read."""
        return f"scale={noise_scale!r}|chip={chip_seed}|t={time_s!r}"

    def get(self, key: str) -> float | None:
        return self.scores.get(key)

    def put(self, key: str, score: float) -> float:
        """Keep ``score`` under ``key`` (written at once); returns ``score``."""
        self.scores[key] = float(score)
        write_json(self.path, {"context": self.context, "scores": self.scores})
        return score
