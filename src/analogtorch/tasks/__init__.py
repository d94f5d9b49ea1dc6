"""Seeded, generated datasets for deep-equilibrium-model studies.

Every generator returns a :class:`TaskData` (train/test tensors plus the task's constants) and
is registered in :data:`TASKS` under a short name for :func:`make_task`:

- "linear": equilibria ``z* = −A⁻¹ B x`` of a stable linear system (:mod:`.linear`);
- "nonlinear": equilibria of ``ż = −z + tanh(W z + U x + b)`` with ``‖W‖₂ < 1`` (:mod:`.nonlinear`);
- "lorenz": the Lorenz-63 flow map over a short horizon (:mod:`.lorenz`);
- "heat", "burgers": steady states of 1-D PDEs from their sources (:mod:`.pde`);
- "pendulum": imitation of an energy-pumping/LQR swing-up expert (:mod:`.pendulum`);
- "mackey-glass": multi-step forecasting of the Mackey–Glass series (:mod:`.timeseries`);
- "maze": which cells of a random grid maze are reachable from a source (:mod:`.maze`);
- "mnist", "fashion-mnist", "cifar10", "imagenet32": image classification (:mod:`.images`).

All randomness comes from the ``seed`` argument (no global RNG): a task is reproducible.
"""

from analogtorch.tasks.base import TASKS, TaskData, make_task, register_task
from analogtorch.tasks.images import IMAGE_TASKS, image_classification, load_imagenet32
from analogtorch.tasks.linear import linear_equilibrium, linear_system, random_hurwitz
from analogtorch.tasks.lorenz import lorenz_flow, lorenz_rhs, rk4_integrate
from analogtorch.tasks.maze import maze_reachability, reachable_cells
from analogtorch.tasks.nonlinear import nonlinear_system, tanh_equilibrium
from analogtorch.tasks.pde import (
    burgers_equilibrium,
    burgers_residual,
    central_difference_matrix,
    heat_equilibrium,
    laplacian_matrix,
    solve_burgers,
    solve_poisson,
)
from analogtorch.tasks.pendulum import (
    PendulumParams,
    angle_to_top,
    closed_loop,
    energy,
    expert_policy,
    expert_torque,
    lqr_gain,
    observation,
    pendulum_imitation,
    pendulum_rhs,
    pendulum_step,
)
from analogtorch.tasks.timeseries import mackey_glass_forecast, mackey_glass_series

__all__ = [
    "IMAGE_TASKS",
    "TASKS",
    "PendulumParams",
    "TaskData",
    "angle_to_top",
    "burgers_equilibrium",
    "burgers_residual",
    "central_difference_matrix",
    "closed_loop",
    "energy",
    "expert_policy",
    "expert_torque",
    "heat_equilibrium",
    "image_classification",
    "laplacian_matrix",
    "linear_equilibrium",
    "linear_system",
    "load_imagenet32",
    "lorenz_flow",
    "lorenz_rhs",
    "lqr_gain",
    "mackey_glass_forecast",
    "mackey_glass_series",
    "make_task",
    "maze_reachability",
    "nonlinear_system",
    "observation",
    "pendulum_imitation",
    "pendulum_rhs",
    "pendulum_step",
    "random_hurwitz",
    "reachable_cells",
    "register_task",
    "rk4_integrate",
    "solve_burgers",
    "solve_poisson",
    "tanh_equilibrium",
]
