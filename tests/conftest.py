"""Test-session settings: one intra-op thread (tests use tiny tensors, where thread
hand-off costs more than it saves, and a busy 2-core CI machine oversubscribes), property
tests derandomised (the same examples every run; ``HYPOTHESIS_PROFILE=explore`` draws new
ones, to hunt for bugs), and an audit of every figure a test saves (:mod:`figure_audit`)."""

import os

import pytest
import torch
from figure_audit import problems
from hypothesis import settings
from matplotlib.figure import Figure

torch.set_num_threads(1)
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
_savefig = Figure.savefig


@pytest.fixture(autouse=True)
def _audit_figures(monkeypatch):
    """Every figure saved during a test must pass :func:`figure_audit.problems`."""

    def savefig(fig, *args, **kwargs):
        found = problems(fig)
        assert not found, f"figure problems: {found}"
        return _savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
