"""Checks every figure the toolkit writes while the test suite runs (see conftest.py).

A figure passes when: it has a title (a suptitle or an axes title); every axes that plots
data (lines, bars, markers) labels both axes, each label naming its unit or scale in
parentheses; a bar axis on a linear scale includes zero (no truncated bars); every title
is narrower than the figure; image grids (``imshow`` with the axes off) are exempt.
"""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.patches import Rectangle


def _plots_data(ax: Axes) -> bool:
    return bool(ax.lines or ax.collections or _bars(ax)) and ax.axison


def _bars(ax: Axes) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _labels_x(ax: Axes) -> bool:
    """A twin shares its x axis with its parent: one of them labels it."""
    return any(other.get_xlabel() for other in ax.get_shared_x_axes().get_siblings(ax))


def _labels_y(ax: Axes) -> bool:
    """Panels that share their y axis (``sharey``) may label it once."""
    return any(other.get_ylabel() for other in ax.get_shared_y_axes().get_siblings(ax))


def problems(fig: Any) -> list[str]:
    """What is wrong with ``fig`` (empty: nothing)."""
    found = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    titles = [t for t in (suptitle, *(ax.get_title() for ax in axes)) if t]
    data_axes = [ax for ax in axes if _plots_data(ax)]
    if data_axes and not titles:
        found.append("no title")
    for ax in data_axes:
        where = f"axes {ax.get_title()!r}"
        if not _labels_x(ax):
            found.append(f"{where}: no x label")
        if not _labels_y(ax):
            found.append(f"{where}: no y label")
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            if label and "(" not in label:
                found.append(f"{where}: axis label {label!r} names no unit or scale")
        if _bars(ax) and ax.get_yscale() == "linear":
            low, high = ax.get_ylim()
            if low > 0 or high < 0:
                found.append(f"{where}: bar axis {low:g}..{high:g} leaves out zero")
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    texts = [fig._suptitle] if fig._suptitle is not None else []
    texts += [ax.title for ax in axes]
    for text in texts:
        if text.get_text() and text.get_window_extent(renderer).width > width:
            found.append(f"title {text.get_text()!r} is wider than the figure")
    return found
