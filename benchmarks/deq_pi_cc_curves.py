"""Why the small PI/CC study is under-trained, and how the PI coupling costs accuracy.

Trains the hybrid DEQ of ``experiments/deq/physics-pi-cc*.yaml`` (heat task, seed 0, width
48 unless stated, PCM with 8-bit weights, the default curriculum, Anderson to a relative
tol of 1e-4) once per row and prints the test error (relative L2, %, on the ideal
surrogate, 128 test samples) after the last epoch:

* sample count × epochs × learning rate (constant or cosine-decayed) × width, plain core;
* the PI coupling c (``P = c (M z + Δt u)``, ``deq/physics.py``) at the full budget.

The numbers are those in docs/deq.md ("Trained to convergence"). ~6 min on one thread.
Run: ``OMP_NUM_THREADS=1 python benchmarks/deq_pi_cc_curves.py``.
"""

from __future__ import annotations

import math

import torch

from analogtorch.deq import SolverOptions, build_hybrid_deq
from analogtorch.deq.physics import make_physics
from analogtorch.deq.training import predict, task_error, train_hybrid
from analogtorch.hardware.profile import HardwareProfile
from analogtorch.nn.base import set_eval_noise
from analogtorch.tasks import make_task
from analogtorch.train.lr_schedule import CosineSchedule
from analogtorch.train.schedules import Curriculum, CurriculumProfiles, epoch_stages

# (core, training samples, epochs, lr, cosine, width, PI coupling)
ROWS = [
    ("plain", 256, 8, 3e-3, False, 48, None),
    ("plain", 256, 60, 3e-3, True, 48, None),
    ("plain", 2048, 8, 3e-3, False, 48, None),
    ("plain", 2048, 60, 3e-3, False, 48, None),
    ("plain", 2048, 60, 3e-3, True, 48, None),
    ("plain", 2048, 40, 1e-2, True, 48, None),
    ("plain", 2048, 40, 3e-3, True, 96, None),
    ("plain", 2048, 40, 3e-3, True, 48, None),
    *[("pi", 2048, 60, 3e-3, True, 48, c) for c in (0.1, 0.25, 0.5, 0.8)],
]
BATCH = 64


def test_error(kind, n_train, epochs, lr, cosine, width, coupling) -> float:
    """Test error (%) of one trained heat hybrid (module docstring)."""
    task = make_task("heat", seed=0, n_train=n_train, n_test=128)
    profile = HardwareProfile.preset("pcm").replace(weight_bits=8)
    physics = None if kind == "plain" else make_physics("heat", task.info, width, coupling)
    model = build_hybrid_deq(
        task.in_features,
        task.out_features,
        profile,
        width=width,
        kind=kind,
        physics=physics,
        forward_options=SolverOptions(tol=1e-4, max_iter=60, mode="relative"),
    )
    steps = math.ceil(n_train / BATCH)
    callbacks = [CurriculumProfiles(Curriculum(epoch_stages(epochs, steps)), profile, steps)]
    if cosine:
        callbacks.append(CosineSchedule(lr, epochs, steps))
    train_hybrid(
        model,
        task.x_train,
        task.y_train,
        "regression",
        epochs=epochs,
        lr=lr,
        batch_size=BATCH,
        callbacks=callbacks,
    )
    model.eval()
    set_eval_noise(model, False)
    out, _ = predict(model, task.x_test)
    return 100 * task_error("regression", out, task.y_test)


def main() -> None:
    torch.set_num_threads(1)
    print("| core | PI coupling | samples | epochs | lr | width | test error (%) |")
    print("|---|---|---|---|---|---|---|")
    for kind, n, epochs, lr, cosine, width, c in ROWS:
        error = test_error(kind, n, epochs, lr, cosine, width, c)
        rate = f"{lr:g} {'cosine' if cosine else 'constant'}"
        print(f"| {kind} | {c or '—'} | {n} | {epochs} | {rate} | {width} | {error:.1f} |")


if __name__ == "__main__":
    main()
