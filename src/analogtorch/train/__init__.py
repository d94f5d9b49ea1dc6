"""Training loops, robustness evaluation, noise schedules and the hardware curriculum."""

from .baselines import (
    noise_aware_normalization,
    noise_injection_convert,
    qat_convert,
    variance_aware_convert,
)
from .evaluate import EvalRow, EvaluationReport, accuracy, evaluate
from .fit import TrainingDivergedError, fit
from .schedules import (
    Constant,
    Curriculum,
    CurriculumProfiles,
    Exponential,
    Linear,
    Schedule,
    Stage,
    Step,
    apply_profile,
    default_stages,
    epoch_stages,
    make_schedule,
)
from .trainer import Trainer, epoch_batches

__all__ = [
    "Constant",
    "Curriculum",
    "CurriculumProfiles",
    "EvalRow",
    "EvaluationReport",
    "Exponential",
    "Linear",
    "Schedule",
    "Stage",
    "Step",
    "Trainer",
    "TrainingDivergedError",
    "accuracy",
    "apply_profile",
    "default_stages",
    "epoch_batches",
    "epoch_stages",
    "evaluate",
    "fit",
    "make_schedule",
    "noise_aware_normalization",
    "noise_injection_convert",
    "qat_convert",
    "variance_aware_convert",
]
