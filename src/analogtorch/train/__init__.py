"""Training loops and robustness evaluation."""

from .evaluate import EvalRow, EvaluationReport, accuracy, evaluate
from .fit import TrainingDivergedError, fit

__all__ = ["EvalRow", "EvaluationReport", "TrainingDivergedError", "accuracy", "evaluate", "fit"]
