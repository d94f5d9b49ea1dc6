"""Experiment tooling on top of the run engine (:mod:`analogtorch.runs`): what a study
produced, used after it ran (``cell_export``: a cell's trained model as one file)."""
