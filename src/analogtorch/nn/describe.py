"""`describe(model)`: the hardware plan of a model as a table, one row per weight layer."""

from __future__ import annotations

from torch import nn

from ..hardware.profile import HardwareProfile
from .base import analog_layers
from .convert import convertible_layers

_HEADER = ("layer", "type", "profile", "weights", "tiles x rows", "w/DAC/ADC bits")
_GRID_HEADER = "grid/rounding"
_GRID_FIELDS = ("weight_quant", "weight_rounding")


def _bits(value: int | None) -> str:
    return "-" if value is None else str(value)


def _grid(profile: HardwareProfile) -> str:
    """``weight_quant/weight_rounding`` of ``profile``, e.g. ``affine/nearest``."""
    return "/".join(getattr(profile, field) for field in _GRID_FIELDS)


def _default_grid() -> str:
    return "/".join(HardwareProfile.model_fields[field].default for field in _GRID_FIELDS)


def describe(model: nn.Module) -> str:
    """A plain-text table of every analog layer of ``model`` (its profile, weight count,
    crossbar tiling ``n_tiles x rows_per_tile`` for the profile's ``tile_rows``, and the
    weight/DAC/ADC bits; ``-`` is full precision) and of every layer ``convert`` could
    make analog but that stays digital. When a layer's weight grid or rounding is not the
    default (``weight_quant='symmetric'``, ``weight_rounding='nearest'``), a last column
    ``grid/rounding`` shows both for every analog layer (e.g. ``affine/stochastic``).
    ``print(at.describe(model))`` shows the plan."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    analog = analog_layers(model)
    digital = convertible_layers(model)
    rows: list[tuple[str, ...]] = []
    grids: list[str] = []  # one per row, "-" for a digital layer
    for name, module in model.named_modules():
        if name in analog:
            layer = analog[name]
            profile = layer.profile
            tiling = layer.row_tiling(profile)
            bits = "/".join(
                _bits(b) for b in (profile.weight_bits, profile.dac_bits, profile.adc_bits)
            )
            rows.append(
                (
                    name or "(model)",
                    type(module).__name__,
                    profile.name,
                    str(layer.weight.numel()),
                    f"{tiling.n_tiles} x {tiling.rows_per_tile}",
                    bits,
                )
            )
            grids.append(_grid(profile))
        elif name in digital:
            weights = sum(p.numel() for n, p in module.named_parameters() if "weight" in n)
            rows.append(
                (name or "(model)", type(module).__name__, "digital", str(weights), "-", "-")
            )
            grids.append("-")
    if not rows:
        return f"{type(model).__name__}: no analog or convertible weight layers"
    header = _HEADER
    if any(grid not in ("-", _default_grid()) for grid in grids):
        header = (*_HEADER, _GRID_HEADER)
        rows = [(*row, grid) for row, grid in zip(rows, grids, strict=True)]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
