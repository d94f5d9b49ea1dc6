"""The ``hil`` arm of a DEQ study (``train.hil``): the curriculum's last stage on VirtualChips.

For every device of ``train.hil.chips`` (``VirtualChip`` of hidden design ``design_seed``: a
sinh I–V, IR drop, gain mismatch, stuck devices and drift that the training profile does
not model), the trained physics-aware model is scored on that chip as it is
(``no fine-tuning``), after HIL fine-tuning on it (``HIL``: forward on the chip, backward
through the twin, :func:`.hil_stage.finetune_on_backend`) and, with ``train.hil.twin``, after
I/O-twin fine-tuning (``I/O twin``: twins fitted once on the chip, then software only).
Every run and every evaluation gets its own chip object: the same device, a fresh read-noise
stream. Fine-tuning batches are drawn from the training set in an order set by the seed.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..hil import VirtualChip
from ..tasks import TaskData
from .hil_stage import evaluate_on_backend, finetune_on_backend
from .hybrid import HybridDEQ

METHODS = ("no fine-tuning", "HIL", "I/O twin")


def hil_arm(
    stage: dict[str, Any], model: HybridDEQ, task: TaskData, batch_size: int, seed: int
) -> list[dict[str, Any]]:
    """One record per chip: each method's evaluation on it (error, reads, solves) and, for
    the fine-tuned ones, the training run (backend input vectors, solves, losses, twin
    errors)."""
    records = []
    for chip in stage["chips"]:

        def backend(chip: int = chip) -> VirtualChip:
            return VirtualChip(seed=chip, design_seed=stage["design_seed"])

        record: dict[str, Any] = {"chip": chip}
        record[METHODS[0]] = evaluate_on_backend(
            model, backend(), task.x_test, task.y_test, task.kind
        )
        for method, name in (("hil", METHODS[1]), ("twin", METHODS[2]))[: 1 + stage["twin"]]:
            tuned = copy.deepcopy(model)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the twins' initial shape nets
                run, solves = finetune_on_backend(
                    tuned,
                    backend(),
                    task.x_train,
                    task.y_train,
                    task.kind,
                    steps=stage["steps"],
                    lr=stage["lr"],
                    batch_size=batch_size,
                    method=method,
                    budget=stage["budget"],
                    recalibrate_every=stage["recalibrate_every"],
                    calibration_batches=stage["calibration_batches"],
                    twin_steps=stage["twin_steps"],
                    seed=seed,
                )
            record[name] = {
                **evaluate_on_backend(tuned, backend(), task.x_test, task.y_test, task.kind),
                "training_reads": run.backend_calls,
                "training_solves": solves,
                "loss_first": run.losses[0],
                "loss_last": run.losses[-1],
                "twin_error_first": run.twin_errors[0],
                "twin_error_last": run.twin_errors[-1],
            }
        records.append(record)
    return records
