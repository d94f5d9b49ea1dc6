"""Test-session settings: one intra-op thread (tests use tiny tensors, where thread
hand-off costs more than it saves, and a busy 2-core CI machine oversubscribes), and an
audit of every figure a test saves (:mod:`figure_audit`)."""

import pytest
import torch
from figure_audit import problems
from matplotlib.figure import Figure

torch.set_num_threads(1)
_savefig = Figure.savefig


@pytest.fixture(autouse=True)
def _audit_figures(monkeypatch):
    """Every figure saved during a test must pass :func:`figure_audit.problems`."""

    def savefig(fig, *args, **kwargs):
        found = problems(fig)
        assert not found, f"figure problems: {found}"
        return _savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
