"""A small network on the SPICE backend: does the surrogate's circuit model hold at the
network level?

A digits MLP (scikit-learn's 8×8 digits, like the demo) is trained digitally and run three
ways with the same conductances and a given wire resistance: exact arithmetic, the
hardware model's IR-drop surrogate (:class:`SurrogateBackend`, noise-free profile), and
ngspice (:class:`SpiceBackend`, the circuit-level reference). Reported: test accuracy of
each and the relative output difference ``‖y − y_spice‖ / ‖y_spice‖`` of the logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..demo import digits_splits
from ..files import write_atomic, write_json
from ..hardware.profile import HardwareProfile
from ..models import build_mlp
from ..nn.convert import convert
from ..train.fit import fit
from .loop import HardwareLoop
from .spice import SpiceBackend
from .surrogate_backend import SurrogateBackend


def _logits(model: torch.nn.Module, backend: Any, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with HardwareLoop(model, backend, mode="backend"), torch.no_grad():
        return model(images)


def run_spice_check(config: dict[str, Any], out_dir: Path) -> str:
    """Train, run on exact / surrogate / SPICE, write ``summary.json`` and ``report.md``."""
    seed = config["seed"]
    tile = config["tile"]
    hidden = config["hidden"]
    train, test = digits_splits(seed, 0.2)
    model = build_mlp(64, hidden, 10, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fit(model, [(train.images, train.labels)] * 1, epochs=config["epochs"], lr=3e-3)
    rows = []
    for r in config["wire_resistance_ohm"]:
        profile = HardwareProfile.preset("ideal").replace(
            name=f"wires-{r:g}ohm", wire_resistance_ohm=r, tile_rows=tile, tile_cols=tile
        )
        analog = convert(model, profile, seed=seed)
        analog.eval()
        with torch.no_grad():
            analog(train.images)  # DAC full scales from data
        spice = _logits(analog, SpiceBackend(profile, tile_rows=tile, tile_cols=tile), test.images)
        surrogate = _logits(analog, SurrogateBackend(profile), test.images)
        with torch.no_grad():
            exact = model.eval()(test.images)

        outputs = {"exact": exact, "surrogate": surrogate, "spice": spice}
        rows.append(
            {
                "wire_resistance_ohm": r,
                "accuracy": {
                    k: float((v.argmax(1) == test.labels).float().mean())
                    for k, v in outputs.items()
                },
                "relative_difference_to_spice": {
                    k: float((outputs[k] - spice).norm() / spice.norm())
                    for k in ("exact", "surrogate")
                },
            }
        )
    name = config["name"]
    lines = [
        f"# {name}: digits MLP {hidden} on ngspice vs the hardware model",
        "",
        f"{tile}×{tile} tiles, noise-free profile, {len(test.labels)} test images, seed {seed}.",
        "",
        "| wire r (Ω) | exact acc. | surrogate acc. | SPICE acc. | ‖exact − SPICE‖/‖SPICE‖ "
        "| ‖surrogate − SPICE‖/‖SPICE‖ |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        a, d = row["accuracy"], row["relative_difference_to_spice"]
        lines.append(
            f"| {row['wire_resistance_ohm']:g} | {100 * a['exact']:.2f} | "
            f"{100 * a['surrogate']:.2f} | {100 * a['spice']:.2f} | {d['exact']:.2e} | "
            f"{d['surrogate']:.2e} |"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "summary.json", {"config": config, "rows": rows})
    markdown = "\n".join(lines) + "\n"
    write_atomic(out_dir / "report.md", markdown)
    return markdown
