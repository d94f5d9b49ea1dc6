"""Headless matplotlib for every plot the toolkit writes (PNG next to its JSON record)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from .files import atomic_path

_CHAR_WIDTH_EM = 0.6  # a generous mean glyph width of the default sans-serif font, in em


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders created) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as partial:  # never a half-written image
            fig.savefig(partial, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        pyplot().close(fig)
    return path


def suptitle(fig: Any, text: str, fontsize: float = 12.0) -> None:
    """Set the figure title, wrapped into lines that fit the figure's width (a long study
    name never runs off a one-panel figure)."""
    width_pt = fig.get_figwidth() * 72.0
    chars = max(20, int(width_pt / (_CHAR_WIDTH_EM * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)
