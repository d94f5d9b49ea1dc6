"""Deep equilibrium models (``at.deq``): noise-aware solvers and implicit gradients.

Solvers share one signature, ``solve(f, z0, options) -> (z, stats)``; the backward mode
(implicit, phantom, unrolled) is chosen independently of the forward solver.
"""

from . import anderson, broyden, fixed_point
from .backward import AdjointNotConvergedWarning, BackwardMode, attach_backward
from .model import DEQ
from .options import SolverOptions, SolverStats

SOLVERS = {
    "fixed_point": fixed_point.solve,
    "anderson": anderson.solve,
    "broyden": broyden.solve,
}

__all__ = [
    "DEQ",
    "SOLVERS",
    "AdjointNotConvergedWarning",
    "BackwardMode",
    "SolverOptions",
    "SolverStats",
    "attach_backward",
]
