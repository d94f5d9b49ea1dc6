"""Robustness evaluation over chip instances, noise levels and times since programming.

For each noise scale ``s`` (multiplying every noise amplitude of the profile), each of
``n_chips`` chips (seeds ``seed, seed+1, ...``, the same chips for every model evaluated
with the same seed) and each time ``t`` after programming, the model's accuracy on the
loader is measured with the chip's frozen programming noise and fresh read noise per read.
Instead of drawing chips, ``evaluate`` can score given ones (``chips=[...]``, e.g. chips
built from measured conductances with ``Chip.from_conductances``), each at its own profile.
Rows report mean ± sample standard deviation (ddof=1) over chips; the report keeps every
chip's accuracy too, so the yield at any spec (share of chips with accuracy >= a threshold,
with its Clopper–Pearson interval, :mod:`.chip_yield`) is computed after the fact.
"""

from __future__ import annotations

import copy
import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.table import Table
from torch import nn

from ..files import write_atomic, write_json
from ..hardware.chip import Chip
from ..hardware.profile import HardwareProfile
from ..nn.base import analog_layers
from ..nn.convert import convert
from ..progress import progress_bar
from ..study_cells import mean_std
from .baselines import recalibrate_batchnorm
from .chip_yield import YieldReport, YieldRow, plot_yield_curves
from .eval_cache import ChipScoreCache, evaluation_context

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EvalRow:
    """Accuracy of one model under one hardware setting (fractions in [0, 1])."""

    model: str
    # "ideal": no stochastic noise; "chip": programmed chips at time_s; "fp32": the digital
    # model in float32 (a row the caller adds, e.g. the demo; the reference of yield_at)
    setting: str
    noise_scale: float
    time_s: float
    accuracy_mean: float
    accuracy_std: float
    n_chips: int

    def formatted(self) -> str:
        """``mean ± std`` in percent."""
        return f"{100 * self.accuracy_mean:.1f} ± {100 * self.accuracy_std:.1f}"


@dataclass(frozen=True)
class ChipAccuracies:
    """Accuracy of each chip behind one ``"chip"`` row (fractions in [0, 1], in chip order)."""

    model: str
    noise_scale: float
    time_s: float
    accuracies: tuple[float, ...]

    def setting(self) -> dict[str, object]:
        """The fields that name its row."""
        return {"model": self.model, "noise_scale": self.noise_scale, "time_s": self.time_s}


@dataclass
class EvaluationReport:
    """Rows of an evaluation and every chip's accuracy; print it, save it as CSV / JSON,
    ask it for the yield at a spec (:meth:`yield_at`) or plot the yield curves."""

    rows: list[EvalRow]
    chips: list[ChipAccuracies] = field(default_factory=list)

    def __add__(self, other: EvaluationReport) -> EvaluationReport:
        return EvaluationReport(self.rows + other.rows, self.chips + other.chips)

    def select_chips(self, **where: object) -> list[ChipAccuracies]:
        """Per-chip accuracies of the chip rows whose model, noise_scale and time_s equal the
        given values."""
        return [c for c in self.chips if all(getattr(c, k) == v for k, v in where.items())]

    def _reference_accuracy(self, model: str, reference: float | str) -> float:
        """``a_ref`` of :meth:`yield_at` for the chips of ``model``."""
        if isinstance(reference, (int, float)) and not isinstance(reference, bool):
            return float(reference)
        if reference == "ideal":
            ideal = self.select(model=model, setting="ideal")
            if len(ideal) != 1:
                raise ValueError(
                    f"reference='ideal': the report has {len(ideal)} ideal rows of model "
                    f"{model!r}, need one; pass reference=<accuracy fraction>"
                )
            return ideal[0].accuracy_mean
        if reference == "digital":
            digital = {r.accuracy_mean for r in self.select(setting="fp32")}
            if len(digital) != 1:
                raise ValueError(
                    f"reference='digital': the report has {len(digital)} different 'fp32' "
                    "rows (the digital model's accuracy), need one; add one, or pass "
                    "reference=accuracy(digital_model, loader) or reference='ideal'"
                )
            return digital.pop()
        raise ValueError(
            f"reference={reference!r}: expected 'digital', 'ideal' or an accuracy fraction"
        )

    def yield_at(
        self,
        threshold: float | None = None,
        *,
        within: float | None = None,
        reference: float | str = "digital",
        confidence: float = 0.95,
    ) -> YieldReport:
        """Yield of every chip setting at a spec: the share of its chips with accuracy
        ``a >= a_spec`` and its exact Clopper–Pearson interval at ``confidence``.

        Give the spec as ``threshold`` (``a_spec``, an accuracy fraction), or as ``within``:
        ``a_spec = a_ref - within`` (``within=0.01``: within 1 point), with ``a_ref`` the
        report's ``"fp32"`` row (``reference="digital"``, the digital model), each model's
        own ``"ideal"`` row (``reference="ideal"``: noise-free hardware) or a given fraction.
        """
        if (threshold is None) == (within is None):
            raise ValueError("give the spec as threshold=<accuracy> or within=<points below>")
        if threshold is not None and not (
            isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0
        ):
            raise ValueError(
                f"threshold={threshold!r}: need an accuracy fraction in [0, 1] (0.95, not 95)"
            )
        if within is not None and not (isinstance(within, (int, float)) and 0.0 <= within <= 1):
            raise ValueError(
                f"within={within!r}: need accuracy points as a fraction in [0, 1] (0.01 = 1 point)"
            )
        rows = []
        for c in self.chips:
            if within is None:
                spec = float(threshold)  # type: ignore[arg-type]  # given when within is not
            else:
                spec = self._reference_accuracy(c.model, reference) - within
            rows.append(YieldRow.count(c.accuracies, spec, confidence, **c.setting()))
        return YieldReport(rows)

    def plot_yield(
        self,
        path: str | Path,
        *,
        spec: float | None = None,
        title: str = "Chip yield against the accuracy spec",
        confidence: float = 0.95,
        **where: object,
    ) -> Path:
        """Yield curves (share of chips with accuracy >= threshold vs the threshold, in %)
        of the chip settings matching ``where`` (e.g. ``noise_scale=1.0``), one line each,
        with Clopper–Pearson bands at ``confidence``; ``spec`` (an accuracy fraction) is
        marked. Writes a PNG to ``path`` and returns it."""
        chips = self.select_chips(**where)
        if not chips:
            raise ValueError(f"no chip rows match {where}: nothing to plot")
        varying = [
            k for k in ("model", "noise_scale", "time_s") if len({getattr(c, k) for c in chips}) > 1
        ]
        names = {"model": "{}", "noise_scale": "{:g}× noise", "time_s": "t = {:g} s"}
        curves = {
            ", ".join(names[k].format(getattr(c, k)) for k in varying or ["model"]): c.accuracies
            for c in chips
        }
        return plot_yield_curves(curves, path, title=title, spec=spec, confidence=confidence)

    def select(self, **where: object) -> list[EvalRow]:
        """Rows whose fields equal the given values."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in where.items())]

    def table(self, title: str = "Accuracy (%) over chips: mean ± std") -> Table:
        table = Table(title=title)
        for column in ("model", "setting", "noise ×", "time (s)", "accuracy", "chips"):
            table.add_column(column, justify="left" if column in ("model", "setting") else "right")
        for r in self.rows:
            table.add_row(
                r.model,
                r.setting,
                f"{r.noise_scale:g}",
                f"{r.time_s:g}",
                r.formatted(),
                str(r.n_chips),
            )
        return table

    def __str__(self) -> str:
        lines = [
            f"{'model':<18} {'setting':<7} {'noise':>6} {'time_s':>9} {'accuracy %':>14} chips"
        ]
        lines += [
            f"{r.model:<18} {r.setting:<7} {r.noise_scale:>6g} {r.time_s:>9g} "
            f"{r.formatted():>14} {r.n_chips:>5}"
            for r in self.rows
        ]
        return "\n".join(lines)

    def to_dicts(self) -> list[dict[str, object]]:
        return [asdict(r) for r in self.rows]

    def to_markdown(self) -> str:
        """The rows as a markdown table (accuracy in percent, mean ± std over chips)."""
        lines = [
            "| model | setting | noise × | time (s) | accuracy % | chips |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.model} | {r.setting} | {r.noise_scale:g} | {r.time_s:g} | {r.formatted()} | "
            f"{r.n_chips} |"
            for r in self.rows
        ]
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | Path) -> Path:
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(EvalRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(self.to_dicts())
        return write_atomic(path, table.getvalue())

    def to_json(self, path: str | Path) -> Path:
        """``{"rows": [...], "chips": [...]}``: the rows and every chip's accuracy."""
        return write_json(path, {"rows": self.to_dicts(), "chips": [asdict(c) for c in self.chips]})


@torch.no_grad()
def accuracy(model: nn.Module, loader: Batches) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) over ``loader``."""
    device = next(model.parameters()).device
    correct = total = 0
    for x, y in loader:
        logits = model(x.to(device))
        correct += int((logits.argmax(dim=1) == y.to(device)).sum())
        total += y.numel()
    if total == 0:
        raise ValueError("loader yielded no samples")
    return correct / total


def _read_chip(
    chip: Chip,
    time_s: float,
    model: nn.Module,
    loader: Batches,
    calibration: Sequence[torch.Tensor] | None,
) -> float:
    """Accuracy of ``model`` deployed on ``chip`` and read ``time_s`` after programming."""
    with chip.deploy(model, time_s=time_s):
        return _chip_accuracy(model, loader, calibration)


def _chip_accuracy(
    model: nn.Module, loader: Batches, calibration: Sequence[torch.Tensor] | None
) -> float:
    """Accuracy on the deployed chip, after BatchNorm recalibration when batches are given."""
    if calibration is None:
        return accuracy(model, loader)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [copy.deepcopy(bn.state_dict()) for bn in norms]  # only the statistics change
    try:
        recalibrate_batchnorm(model, calibration)
        return accuracy(model, loader)
    finally:
        for bn, state in zip(norms, saved, strict=True):
            bn.load_state_dict(state)


@torch.no_grad()
def _set_missing_ranges(model: nn.Module, loader: Batches) -> None:
    """Set the DAC full scale of every layer that has seen no input yet (a converted
    digital model's) by one ideal read of the first batch, before any chip is read and
    whether or not the scores come from a cache: a resumed evaluation otherwise sets them
    at its first chip read, from that chip's noisy activations, and scores other ranges."""
    if all(bool(layer.input_range_initialized) for layer in analog_layers(model).values()):
        return
    device = next(model.parameters()).device
    for x, _ in loader:
        model(x.to(device))
        return


def _check_args(n_chips: int, times: Sequence[float], noise_scales: Sequence[float]) -> None:
    if n_chips < 1:
        raise ValueError(f"n_chips={n_chips}: need at least 1 chip")
    for t in times:
        if not (t >= 0 and math.isfinite(t)):
            raise ValueError(f"times contains {t}: times since programming are finite, >= 0 s")
    for s in noise_scales:
        if not (s >= 0 and math.isfinite(s)):
            raise ValueError(f"noise_scales contains {s}: scales are finite and >= 0")


def _check_chips(
    chips: Sequence[Chip], n_chips: int | None, seed: int | None, noise_scales: Sequence[float]
) -> None:
    """Given chips are read as they are: refuse the arguments that would draw or rescale them."""
    if len(chips) == 0:
        raise ValueError("chips=[]: give at least one Chip, or leave chips out to draw n_chips")
    for chip in chips:
        if not isinstance(chip, Chip):
            raise TypeError(f"chips contains a {type(chip).__name__}: expected analogtorch.Chip")
    clashing = [name for name, value in (("n_chips", n_chips), ("seed", seed)) if value is not None]
    if list(noise_scales) != [1.0]:
        clashing.append("noise_scales")
    if clashing:
        raise ValueError(
            f"chips= are read at their own profiles and seeds; {', '.join(clashing)} only "
            "apply to chips that evaluate draws: leave them out"
        )


def _draw_chip(
    model: nn.Module, profile: HardwareProfile, seed: int, noise_scale: float, per_layer: bool
) -> Chip:
    """Chip ``seed``: every layer at ``profile`` or, ``per_layer``, each at its own; noise
    amplitudes times ``noise_scale``."""
    if per_layer:
        return Chip.for_model(model, seed, noise_scale)
    chip_profile = profile.scale_noise(noise_scale)
    names = analog_layers(model)
    return Chip(chip_profile, seed, layer_profiles=dict.fromkeys(names, chip_profile))


def evaluate(
    model: nn.Module,
    loader: Batches,
    n_chips: int | None = None,
    times: Sequence[float] = (0.0,),
    *,
    profile: HardwareProfile | None = None,
    noise_scales: Sequence[float] = (1.0,),
    seed: int | None = None,
    label: str = "model",
    show_progress: bool = False,
    calibration: Sequence[torch.Tensor] | None = None,
    chips: Sequence[Chip] | None = None,
    cache: str | Path | None = None,
) -> EvaluationReport:
    """Accuracy of ``model`` ideal and on ``n_chips`` chips per noise scale and time.

    Args:
        model: an analog model (from ``convert``) or a digital one, which is converted
            with ``profile`` first (so a digital model is evaluated on the same chips).
            The DAC full scale of a layer that has seen no input yet (every layer of a
            digital model) is set by the first batch of ``loader``, ``r_in = max |x|``:
            to keep test data out of it, convert the model and run a training batch
            through it before evaluating.
        loader: iterable of (inputs, integer labels) batches.
        n_chips: chips per (noise scale, time), default 10; chip ``k`` has seed ``seed + k``.
        times: seconds since programming at which each chip is read.
        profile: the profile every analog layer is read at; default each layer's own
            (converted with per-layer rules, each layer keeps its hardware; with ``chips``
            and a digital model, the first chip's).
        noise_scales: multipliers of every noise amplitude of the profile.
        seed: seed of the first drawn chip, default 0.
        label: the model's name in the rows.
        calibration: input batches; when given, the BatchNorm statistics are re-estimated
            on each chip at each time before it is scored (noise-aware normalisation, Tsai
            et al. 2020: :func:`~.baselines.recalibrate_batchnorm`) and restored after.
        chips: score these chips (e.g. ``Chip.from_conductances(path)``), each at its own
            profile and seed, instead of drawing ``n_chips``; ``n_chips``, ``seed`` and
            ``noise_scales`` are then left out, and each time gets one row (noise scale 1).
        cache: a JSON file that keeps every score as it is measured
            (:class:`~.eval_cache.ChipScoreCache`), so an evaluation interrupted by a killed
            process resumes at the next chip; it is used only for the same model weights,
            data, calibration batches and profile (anything else starts afresh). Not with
            ``chips``.

    Returns the rows and every chip's accuracy (``report.chips``; yield: ``report.yield_at``):
    each chip's accuracy is ``accuracy(model, loader)`` inside ``chip.deploy(model, t)``.
    """
    if chips is not None:
        _check_chips(chips, n_chips, seed, noise_scales)
        if cache is not None:
            raise ValueError("cache= keeps scores of drawn chips; give n_chips, not chips=")
        n_chips = len(chips)
    n_chips = 10 if n_chips is None else n_chips
    seed = 0 if seed is None else seed
    _check_args(n_chips, times, noise_scales)
    layers = analog_layers(model)
    if profile is None and not layers and chips is not None:
        profile = chips[0].profile
    # layers converted with per-layer rules are read each at its own profile, unless
    # profile= says which hardware every layer is read at
    per_layer = profile is None and len({layer.profile for layer in layers.values()}) > 1
    if profile is None:
        if not layers:
            raise ValueError("a digital model needs profile= to be evaluated on chips")
        profile = next(iter(layers.values())).profile
    if not layers:
        model = convert(model, profile)
    was_training = model.training
    model.eval()
    _set_missing_ranges(model, loader)
    scores = None
    if cache is not None:
        context = evaluation_context(model, loader, profile, calibration, per_layer)
        scores = ChipScoreCache(cache, context)

    def measured(key: str, measure: Callable[[], float]) -> float:
        if scores is None:
            return measure()
        found = scores.get(key)
        return found if found is not None else scores.put(key, measure())

    rows = [
        EvalRow(
            label, "ideal", 0.0, 0.0, measured("ideal", lambda: accuracy(model, loader)), 0.0, 1
        )
    ]
    per_chip = []
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"evaluating {label}", total=len(noise_scales) * n_chips)
        for scale in noise_scales:
            if chips is None:
                chips_read = [
                    _draw_chip(model, profile, seed + k, scale, per_layer) for k in range(n_chips)
                ]
            else:
                chips_read = list(chips)
            per_time: dict[float, list[float]] = {t: [] for t in times}
            for chip in chips_read:
                for t in times:  # programmed once per chip, read at every time
                    per_time[t].append(
                        measured(
                            ChipScoreCache.key(scale, chip.seed, t),
                            lambda chip=chip, t=t: _read_chip(chip, t, model, loader, calibration),
                        )
                    )
                bar.advance(task)
            for t in times:
                mean, std = mean_std(per_time[t])
                rows.append(EvalRow(label, "chip", scale, t, mean, std, n_chips))
                per_chip.append(ChipAccuracies(label, scale, t, tuple(per_time[t])))
    model.train(was_training)
    return EvaluationReport(rows, per_chip)
