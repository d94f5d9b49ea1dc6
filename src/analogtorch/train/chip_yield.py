"""Chip-population yield: the share of chips whose accuracy meets a spec, with its exact
(Clopper–Pearson) confidence interval, and the yield curve over the spec.

With ``n`` chips of which ``k`` have accuracy ``>= threshold``, the yield is ``k / n`` and the
two-sided ``1 - alpha`` interval (``alpha = 1 - confidence``) is

    lower = B^-1(alpha / 2; k, n - k + 1)        (0 when k = 0)
    upper = B^-1(1 - alpha / 2; k + 1, n - k)    (1 when k = n)

with ``B^-1(q; a, b)`` the ``q`` quantile of the Beta(a, b) distribution (Clopper and Pearson,
Biometrika 26, 404, 1934): the set of chip pass rates ``p`` for which observing ``k`` or
fewer (or ``k`` or more) passing chips out of ``n`` has probability at least ``alpha / 2``.
It covers the true yield at least ``confidence`` of the time for every ``p`` and ``n``.
Accuracies and thresholds are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta

from ..figures import pyplot, save_figure, suptitle

# Accuracies are ratios of counts, and a spec such as "digital - 0.01" is not exact in binary
# floating point: a chip that ties the spec to within this much passes.
TIE_TOLERANCE = 1e-12


def clopper_pearson(n_pass: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval ``(lower, upper)`` for a pass rate from ``n_pass`` of ``n``
    trials (module docstring), as fractions in [0, 1]."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: need an integer number of trials >= 1")
    if isinstance(n_pass, bool) or not isinstance(n_pass, int) or not 0 <= n_pass <= n:
        raise ValueError(f"n_pass={n_pass!r}: need an integer in 0..n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: need a level strictly between 0 and 1")
    alpha = 1.0 - confidence
    lower = 0.0 if n_pass == 0 else float(beta.ppf(alpha / 2, n_pass, n - n_pass + 1))
    upper = 1.0 if n_pass == n else float(beta.ppf(1 - alpha / 2, n_pass + 1, n - n_pass))
    return lower, upper


@dataclass(frozen=True)
class YieldRow:
    """Yield of one chip setting at one spec (accuracy fractions; yield and bounds in [0, 1])."""

    model: str
    noise_scale: float
    time_s: float
    threshold: float  # a chip passes when its accuracy >= threshold
    n_pass: int
    n_chips: int
    fraction: float  # n_pass / n_chips
    lower: float  # Clopper–Pearson bounds at ``confidence``
    upper: float
    confidence: float

    @classmethod
    def count(
        cls,
        accuracies: Sequence[float],
        threshold: float,
        confidence: float,
        **setting: Any,
    ) -> YieldRow:
        """The yield of the chips with these ``accuracies`` at ``threshold``."""
        n = len(accuracies)
        n_pass = sum(a >= threshold - TIE_TOLERANCE for a in accuracies)
        lower, upper = clopper_pearson(n_pass, n, confidence)
        return cls(
            threshold=threshold,
            n_pass=n_pass,
            n_chips=n,
            fraction=n_pass / n,
            lower=lower,
            upper=upper,
            confidence=confidence,
            **setting,
        )

    def formatted(self) -> str:
        """``yield [lower, upper]`` in percent."""
        return f"{100 * self.fraction:.0f} [{100 * self.lower:.0f}, {100 * self.upper:.0f}]"


@dataclass
class YieldReport:
    """Rows of :meth:`~.evaluate.EvaluationReport.yield_at`; print it or write it out."""

    rows: list[YieldRow]

    def select(self, **where: object) -> list[YieldRow]:
        """Rows whose fields equal the given values."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in where.items())]

    def to_dicts(self) -> list[dict[str, object]]:
        return [asdict(r) for r in self.rows]

    def _cells(self) -> list[tuple[str, ...]]:
        return [
            (
                r.model,
                f"{r.noise_scale:g}",
                f"{r.time_s:g}",
                f"{100 * r.threshold:.1f}",
                f"{r.n_pass}/{r.n_chips}",
                r.formatted(),
            )
            for r in self.rows
        ]

    def _confidence(self) -> str:
        return f"{100 * self.rows[0].confidence:g} % CI" if self.rows else "CI"

    def __str__(self) -> str:
        header = ("model", "noise ×", "time (s)", "spec ≥ (%)", "chips", "yield %")
        table = [(*header[:-1], f"{header[-1]} [{self._confidence()}]"), *self._cells()]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        return "\n".join(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in table
        )

    def to_markdown(self) -> str:
        """The rows as a markdown table (spec and yield in percent)."""
        lines = [
            "| model | noise × | time (s) | spec ≥ (%) | chips passing | "
            f"yield % [{self._confidence()}] |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(cells) + " |" for cells in self._cells()]
        return "\n".join(lines) + "\n"


def yield_curve(
    accuracies: Sequence[float], confidence: float = 0.95, margin: float = 0.005
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds ``x`` and the yield with its lower and upper bound at each, for a step plot
    (``where="pre"``: the yield ``#(a >= x) / n`` is constant on ``(a_i, a_(i+1)]`` between
    consecutive distinct accuracies ``a_i``), from ``margin`` below the worst chip to
    ``margin`` above the best."""
    values = np.asarray(accuracies, dtype=float)
    x = np.concatenate(([values.min() - margin], np.unique(values), [values.max() + margin]))
    n_pass = [int((values >= t - TIE_TOLERANCE).sum()) for t in x]
    bounds = np.array([clopper_pearson(k, len(values), confidence) for k in n_pass])
    return x, np.array(n_pass) / len(values), bounds[:, 0], bounds[:, 1]


def plot_yield_curves(
    curves: dict[str, Sequence[float]],
    path: str | Path,
    *,
    title: str,
    spec: float | None = None,
    confidence: float = 0.95,
) -> Path:
    """Yield (share of chips with accuracy >= threshold, %) against the threshold (%), one
    step line per setting in ``curves`` (label -> per-chip accuracies) with its
    Clopper–Pearson band; ``spec`` (an accuracy fraction) is marked. Saved as PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, accuracies in curves.items():
        x, fraction, lower, upper = yield_curve(accuracies, confidence)
        (line,) = ax.step(100 * x, 100 * fraction, where="pre", label=label)
        ax.fill_between(
            100 * x, 100 * lower, 100 * upper, step="pre", alpha=0.2, color=line.get_color()
        )
    if spec is not None:
        ax.axvline(
            100 * spec, color="grey", linestyle=":", linewidth=1, label=f"spec {100 * spec:.1f} %"
        )
    ax.set_xlabel("accuracy threshold (%)")
    ax.set_ylabel(f"chips with accuracy ≥ threshold (%), {100 * confidence:g} % CI")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    suptitle(fig, title)
    fig.tight_layout()
    return save_figure(fig, path)
