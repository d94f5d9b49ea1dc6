"""Exact DC solve of a resistive crossbar with wire resistance (the IR-drop reference).

Circuit (one tile, ``rows`` inputs x ``cols`` outputs, all in SI units):

* Row ``i`` (word line) is driven at its left end by an ideal source ``V_i`` (volts). A wire
  segment of resistance ``r`` (ohms) lies between the source and the node of column 0, and
  between adjacent column nodes: row nodes ``u_ij``.
* Column ``j`` (bit line) is read at its bottom end by a transimpedance amplifier that holds
  it at virtual ground (0 V). A segment ``r`` lies between adjacent row nodes and between the
  node of the last row and the amplifier: column nodes ``v_ij``.
* Device ``(i, j)`` of conductance ``g_ij`` (siemens) joins ``u_ij`` to ``v_ij`` and carries
  ``I_ij = g_ij (u_ij - v_ij)`` (amperes). The output of column ``j`` is the current into its
  amplifier, ``I_j = sum_i I_ij``; for ``r = 0`` this is the ideal ``I_j = sum_i g_ij V_i``.

Kirchhoff's current law at the ``2 rows cols`` internal nodes (``u_i,-1 = V_i`` is the source,
``v_rows,j = 0`` the amplifier, and a neighbour past an open wire end is simply absent)::

    (u_ij - u_i,j-1)/r + (u_ij - u_i,j+1)/r + g_ij (u_ij - v_ij) = 0
    (v_ij - v_i-1,j)/r + (v_ij - v_i+1,j)/r + g_ij (v_ij - u_ij) = 0

The unknowns are solved as currents, ``y_u = (V_i - u_ij)/r`` (row drop over ``r``) and
``y_v = v_ij/r``; multiplying the equations by ``r`` gives the symmetric positive definite
system ::

    (L_row + r g_ij) y_u + r g_ij y_v = g_ij V_i
    (L_col + r g_ij) y_v + r g_ij y_u = g_ij V_i

with ``L_row`` / ``L_col`` the integer path Laplacians of one word / bit line (grounded at the
source / amplifier end). Every quantity is then a small current of the size of the outputs,
so nothing cancels for small ``r``, and the output is ``I_j = y_v[rows-1, j]``, the current
in the last bit-line segment. The matrix is factorised once (sparse LU) and all right-hand
sides of a batch are solved together.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.linalg import splu

__all__ = ["effective_conductance_exact", "solve_crossbar"]


def _check_conductance(g: ArrayLike) -> NDArray[np.float64]:
    g_arr = np.asarray(g, dtype=np.float64)
    if g_arr.ndim != 2 or 0 in g_arr.shape:
        raise ValueError(
            f"g: shape {g_arr.shape} is not allowed; expected a non-empty conductance matrix "
            "of shape (rows, cols) in siemens"
        )
    if not np.all(np.isfinite(g_arr)):
        raise ValueError("g: contains NaN or inf; conductances must be finite, in siemens")
    if np.any(g_arr < 0):
        raise ValueError(
            f"g: minimum value {g_arr.min()!r} is negative; conductances must be >= 0 siemens "
            "(map signed weights to a differential pair of non-negative conductances first)"
        )
    return g_arr


def check_wire_resistance(wire_resistance_ohm: float) -> float:
    """Validated wire-segment resistance in ohms (finite, >= 0) as a float."""
    if isinstance(wire_resistance_ohm, bool) or not isinstance(wire_resistance_ohm, Real):
        raise ValueError(
            f"wire_resistance_ohm: {wire_resistance_ohm!r} is not allowed; expected a real "
            "number of ohms >= 0"
        )
    r = float(wire_resistance_ohm)
    if not math.isfinite(r) or r < 0:
        raise ValueError(
            f"wire_resistance_ohm: {wire_resistance_ohm!r} is not allowed; expected a finite "
            "resistance >= 0 ohm per wire segment"
        )
    return r


def _check_input_voltages(v_in: ArrayLike, rows: int) -> NDArray[np.float64]:
    v_arr = np.asarray(v_in, dtype=np.float64)
    if v_arr.ndim not in (1, 2) or v_arr.shape[-1] != rows:
        raise ValueError(
            f"v_in: shape {v_arr.shape} is not allowed; expected ({rows},) or (batch, {rows}) "
            "input voltages in volts, one per row of g"
        )
    if not np.all(np.isfinite(v_arr)):
        raise ValueError("v_in: contains NaN or inf; input voltages must be finite, in volts")
    return v_arr


def _path_laplacian(n: int, grounded_at_end: bool) -> sp.csr_matrix:
    """Laplacian of ``n`` nodes in a chain of unit conductances, one end tied to a fixed node.

    ``grounded_at_end=False``: node 0 is tied (word line: the source is before column 0).
    ``grounded_at_end=True``: node n-1 is tied (bit line: the amplifier is after the last row).
    """
    diag = np.full(n, 2.0)
    diag[-1 if not grounded_at_end else 0] = 1.0
    if n == 1:
        diag[0] = 1.0
    off = -np.ones(n - 1)
    return sp.diags([off, diag, off], [-1, 0, 1], format="csr")


def _solve_currents(g: NDArray[np.float64], v: NDArray[np.float64], r: float) -> NDArray:
    """Column currents (batch, cols) for voltages v (batch, rows), r > 0."""
    rows, cols = g.shape
    n = rows * cols
    # Row-major node order i*cols + j: word lines are contiguous blocks and bit lines are
    # strided, so both wire Laplacians are Kronecker products with an identity.
    l_row = sp.kron(sp.identity(rows), _path_laplacian(cols, grounded_at_end=False))
    l_col = sp.kron(_path_laplacian(rows, grounded_at_end=True), sp.identity(cols))
    rg = sp.diags(r * g.ravel())
    system = sp.block_array([[l_row + rg, rg], [rg, l_col + rg]], format="csc")

    device_drive = (g[None, :, :] * v[:, :, None]).reshape(v.shape[0], n)  # g_ij V_i, amperes
    rhs = np.concatenate([device_drive, device_drive], axis=1).T
    y = splu(system).solve(np.ascontiguousarray(rhs))
    y_col = y[n:, :].T.reshape(v.shape[0], rows, cols)
    return y_col[:, rows - 1, :]


def solve_crossbar(
    g: ArrayLike, v_in: ArrayLike, wire_resistance_ohm: float
) -> NDArray[np.float64]:
    """Exact output currents of a crossbar with wire resistance (modified nodal analysis).

    Solves Kirchhoff's current law at all ``2 rows cols`` internal nodes (see the module
    docstring for the circuit and equations) in float64 with one sparse LU factorisation
    shared by the whole batch.

    Args:
        g: device conductances, shape (rows, cols), siemens, all >= 0.
        v_in: row input voltages, shape (rows,) or (batch, rows), volts.
        wire_resistance_ohm: resistance of one wire segment, ohms, >= 0. For 0 the ideal
            ``v_in @ g`` is returned exactly.

    Returns:
        Column currents into the amplifiers, amperes: shape (cols,) or (batch, cols).

    Raises:
        ValueError: a shape is wrong, a conductance or the resistance is negative, or a
            value is NaN/inf; the message names the argument.
    """
    g_arr = _check_conductance(g)
    r = check_wire_resistance(wire_resistance_ohm)
    v_arr = _check_input_voltages(v_in, g_arr.shape[0])
    if r == 0.0:
        return v_arr @ g_arr
    currents = _solve_currents(g_arr, np.atleast_2d(v_arr), r)
    return currents[0] if v_arr.ndim == 1 else currents


def effective_conductance_exact(g: ArrayLike, wire_resistance_ohm: float) -> NDArray[np.float64]:
    """Exact effective conductance ``G_eff`` (rows, cols), siemens, with ``I_out = G_eff^T V``.

    The circuit is linear in the input voltages, so row ``k`` of ``G_eff`` is the vector of
    column currents for 1 V on row ``k`` and 0 V on all other rows; all ``rows`` basis inputs
    are solved with one factorisation.

    Args:
        g: device conductances, shape (rows, cols), siemens, all >= 0.
        wire_resistance_ohm: resistance of one wire segment, ohms, >= 0.
    """
    g_arr = _check_conductance(g)
    return solve_crossbar(g_arr, np.eye(g_arr.shape[0]), wire_resistance_ohm)
