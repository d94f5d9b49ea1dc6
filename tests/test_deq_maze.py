"""The maze reachability task: BFS labels on hand-built mazes, generated labels against an
independent reference (scipy's connected-component labelling), seeding, and its study config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from analogtorch.deq.study import load_study
from analogtorch.runs import config_hash
from analogtorch.tasks import make_task, maze_reachability, reachable_cells

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments" / "deq"
# SHA-256 (first 16 hex digits) of maze.yaml as `analogtorch deq study` fingerprints it, as run
# for docs/results/deq/maze: a change restarts that run.
MAZE_DIGEST = "c9eb7718d7a20412"


def grid(rows: list[str]) -> torch.Tensor:
    """A maze from text: '.' open, '#' wall."""
    return torch.tensor([[ch == "." for ch in row] for row in rows])


def test_bfs_stops_at_a_wall_across_the_grid():
    maze = grid(["..#..", "..#..", "..#.."])
    expected = grid(["..###", "..###", "..###"])
    assert torch.equal(reachable_cells(maze, (1, 0)), expected)


def test_bfs_follows_a_winding_corridor_to_its_end():
    maze = grid([".....", "####.", ".....", ".####", "....."])
    assert torch.equal(reachable_cells(maze, (0, 0)), maze)  # 17 cells, one corridor
    maze[2, 2] = False  # cut the corridor in the middle
    assert int(reachable_cells(maze, (0, 0)).sum()) == 8


def test_diagonal_neighbours_are_not_connected():
    maze = grid([".#", "#."])
    assert reachable_cells(maze, (0, 0)).tolist() == [[True, False], [False, False]]


def test_walled_in_source_reaches_only_itself():
    maze = grid([".#.", "#.#", ".#."])
    reach = reachable_cells(maze, (1, 1))
    assert int(reach.sum()) == 1 and bool(reach[1, 1])


def test_a_wall_as_source_is_refused():
    with pytest.raises(ValueError, match="source=\\(0, 1\\) must be an open cell"):
        reachable_cells(grid([".#"]), (0, 1))


def test_generated_labels_match_connected_components():
    task = maze_reachability(n_train=64, n_test=16, seed=3, size=7)
    x = torch.cat([task.x_train, task.x_test])
    y = torch.cat([task.y_train, task.y_test])
    open_cells = x[:, :49].reshape(-1, 7, 7).numpy() > 0.5
    sources = x[:, 49:].argmax(dim=1).numpy()
    four = ndimage.generate_binary_structure(2, 1)
    for cells, source, labels in zip(open_cells, sources, y.numpy(), strict=True):
        components, _ = ndimage.label(cells, structure=four)
        component = components.reshape(-1)[source]
        assert component > 0  # the source is open
        expected = np.where(components.reshape(-1) == component, 1.0, -1.0)
        np.testing.assert_array_equal(labels, expected)


def test_maze_task_is_seeded_and_near_the_percolation_balance():
    a = make_task("maze", n_train=256, n_test=32, seed=1)
    b = make_task("maze", n_train=256, n_test=32, seed=1)
    c = make_task("maze", n_train=256, n_test=32, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (256, 128) and a.y_train.shape == (256, 64)
    assert torch.all(a.x_train[:, 64:].sum(dim=1) == 1)  # one source per maze
    walls = a.x_train[:, :64] == 0
    assert torch.all(a.y_train[walls] == -1)
    # wall density 0.4: about 60 % of the cells open, most but not all of them reachable
    reachable_of_open = (a.y_train > 0).sum() / (~walls).sum()
    assert 0.4 < float(reachable_of_open) < 0.8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"size": 1}, "size=1"), ({"wall_density": 1.0}, "wall_density=1.0")],
)
def test_bad_maze_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        maze_reachability(n_train=4, n_test=4, **kwargs)


def test_maze_study_config_runs_the_deq_against_its_explicit_twin():
    config = load_study(EXPERIMENTS / "maze.yaml")
    assert config["task"] == "maze" and config["kind"] == "classification"
    assert {"physics-aware", "explicit"} <= set(config["arms"])
    assert config["eval"]["chips"] >= 5
    assert config_hash(json.loads(json.dumps(config, default=str)))[:16] == MAZE_DIGEST
