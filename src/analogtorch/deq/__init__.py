"""Deep equilibrium models (``at.deq``): noise-aware solvers, implicit gradients, hybrid
analog–digital models, analog relaxation.

Solvers share one signature, ``solve(f, z0, options) -> (z, stats)``; the backward mode
(implicit, phantom, unrolled) is chosen independently of the forward solver.
:class:`HybridDEQ` puts an analog core (plain, PI-DEQ or CC-DEQ, contractive by projection)
between low-precision digital layers and finds its equilibrium with a solver or, with
``forward="relaxation"``, by running the core as a continuous-time circuit (:func:`relax`,
settling time in seconds and energy in joules per sample), differentiated implicitly either way.
"""

from ..train.schedules import CurriculumProfiles
from . import anderson, broyden, fixed_point
from .backward import AdjointNotConvergedWarning, BackwardMode, attach_backward
from .contractivity import contraction_factor, operator_norm, project_contractive_
from .cores import AnalogCore, CCCore, CircuitSaturation, PICore
from .hybrid import HybridDEQ, build_hybrid_deq
from .interface import Converter
from .model import DEQ
from .options import SolverOptions, SolverStats
from .regularizers import (
    RegularizerWeights,
    core_energy_nj,
    feedback_sparsity,
    jacobian_penalty,
)
from .relaxation import RelaxationOptions, RelaxationStats, relax, relaxation_time_constant
from .training import (
    DEQLoss,
    ProjectContractive,
    adc_snr_db,
    evaluate_hybrid,
    train_hybrid,
)

SOLVERS = {
    "fixed_point": fixed_point.solve,
    "anderson": anderson.solve,
    "broyden": broyden.solve,
}

__all__ = [
    "DEQ",
    "SOLVERS",
    "AdjointNotConvergedWarning",
    "AnalogCore",
    "BackwardMode",
    "CCCore",
    "CircuitSaturation",
    "Converter",
    "CurriculumProfiles",
    "DEQLoss",
    "HybridDEQ",
    "PICore",
    "ProjectContractive",
    "RegularizerWeights",
    "RelaxationOptions",
    "RelaxationStats",
    "SolverOptions",
    "SolverStats",
    "adc_snr_db",
    "attach_backward",
    "build_hybrid_deq",
    "contraction_factor",
    "core_energy_nj",
    "evaluate_hybrid",
    "feedback_sparsity",
    "jacobian_penalty",
    "operator_norm",
    "project_contractive_",
    "relax",
    "relaxation_time_constant",
    "train_hybrid",
]
