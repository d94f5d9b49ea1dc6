"""Reachability in random grid mazes: a task whose solution is an iterated local rule.

A maze is an ``n × n`` grid of open cells and walls (site percolation: each cell a wall with
probability ``p``) with one open source cell ``s``. A cell is *reachable* when it is open and
joined to ``s`` by a path of open cells, each step to one of its 4 neighbours. The labels are
the least fixed point of the flood fill

    r_i = open_i ∧ (i = s ∨ ∃ j ∈ N(i): r_j),

reached after as many sweeps as the longest shortest path from ``s`` (about ``n²/2`` cells on
a winding corridor). A weight-tied recurrent model can represent this rule once and iterate it
to convergence; a feed-forward net of the same size applies its weights a fixed number of times
(Anil et al., "Path independent equilibrium models can better exploit test-time computation",
NeurIPS 2022; Bansal et al., "End-to-end algorithm synthesis with recurrent networks", NeurIPS
2022, who use such mazes). Near the percolation threshold (``p ≈ 0.41`` on the square lattice)
the open clusters are large and tortuous, so reachability is neither local nor trivial. The
rule has one fixed point per union of open clusters and selects the least; a contractive DEQ
core has a single fixed point and can only approximate it (``docs/deq.md``).

Labels come from a breadth-first search (:func:`reachable_cells`), not from a flood fill.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor

from analogtorch.tasks.base import (
    TaskData,
    check_dtype,
    check_float,
    check_int,
    generator,
    register_task,
)


def reachable_cells(open_cells: Tensor, source: tuple[int, int]) -> Tensor:
    """Cells reachable from ``source`` through open 4-neighbours, by breadth-first search.

    ``open_cells``: (n_rows, n_cols) bool, True where the cell is open. ``source`` must be
    open. Returns a bool tensor of the same shape (the source itself included).
    """
    if open_cells.ndim != 2 or open_cells.dtype != torch.bool:
        raise TypeError(
            f"open_cells must be a 2-D bool tensor, got {open_cells.dtype} "
            f"{tuple(open_cells.shape)}"
        )
    rows, cols = open_cells.shape
    grid = open_cells.tolist()
    r0, c0 = source
    if not (0 <= r0 < rows and 0 <= c0 < cols and grid[r0][c0]):
        raise ValueError(f"source={source} must be an open cell of the {rows}×{cols} maze")
    seen = [[False] * cols for _ in range(rows)]
    seen[r0][c0] = True
    queue = deque([(r0, c0)])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < rows and 0 <= nc < cols and grid[nr][nc] and not seen[nr][nc]:
                seen[nr][nc] = True
                queue.append((nr, nc))
    return torch.tensor(seen, dtype=torch.bool)


def random_mazes(
    count: int, size: int, wall_density: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``count`` site-percolation mazes: open cells (count, size, size) bool and one source
    per maze (count, 2) int64 (row, column), drawn uniformly among its open cells (the source
    cell is opened when a maze has none)."""
    open_cells = torch.rand(count, size, size, generator=gen) >= wall_density
    scores = torch.rand(count, size * size, generator=gen)
    flat = scores.masked_fill(~open_cells.reshape(count, -1), -1.0).argmax(dim=1)
    sources = torch.stack([flat // size, flat % size], dim=1)
    open_cells[torch.arange(count), sources[:, 0], sources[:, 1]] = True
    return open_cells, sources


@register_task("maze")
def maze_reachability(
    n_train: int = 4096,
    n_test: int = 1024,
    seed: int = 0,
    size: int = 8,
    *,
    wall_density: float = 0.4,
    dtype: torch.dtype = torch.float32,
) -> TaskData:
    """Regression ``maze ↦ reachability map`` on ``size × size`` mazes (:func:`random_mazes`).

    Inputs ``x`` (N, 2·size²): the open-cell mask (1 open, 0 wall) then the source's one-hot
    map, each flattened row-major. Targets ``y`` (N, size²): +1 for a reachable cell, −1
    otherwise (walls included), so the task's relative L2 error ``‖p − y‖ / ‖y‖`` is the rms
    error per cell in units of the ±1 label. ``info`` holds the grid size, the wall density
    and the fraction of reachable cells.
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    size = check_int("size", size, minimum=2)
    density = check_float("wall_density", wall_density, high=1.0, strict=False)
    dtype = check_dtype(dtype)
    count = n_train + n_test
    open_cells, sources = random_mazes(count, size, density, generator(seed))
    pairs = zip(open_cells, sources.tolist(), strict=True)
    reach = torch.stack([reachable_cells(o, (r, c)) for o, (r, c) in pairs])
    source_map = torch.zeros(count, size * size, dtype=dtype)
    source_map[torch.arange(count), sources[:, 0] * size + sources[:, 1]] = 1.0
    x = torch.cat([open_cells.reshape(count, -1).to(dtype), source_map], dim=1)
    y = 2.0 * reach.reshape(count, -1).to(dtype) - 1.0
    info: dict[str, object] = {
        "size": size,
        "wall_density": density,
        "reachable_fraction": float(reach.double().mean()),
        "target": "+1 where the cell is reachable from the source through open 4-neighbours",
    }
    return TaskData.regression("maze", x, y, n_train, info)
