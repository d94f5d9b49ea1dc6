"""Deep equilibrium layer: ``z* = f(z*, x)`` found by any solver, differentiated by any
backward mode (see :mod:`analogtorch.deq.backward`)."""

from __future__ import annotations

import torch
from torch import nn

from analogtorch.deq.backward import (
    BACKWARD_MODES,
    BackwardMode,
    BackwardState,
    Solver,
    attach_backward,
)
from analogtorch.deq.options import SolverOptions, SolverStats


class DEQ(nn.Module):
    """Equilibrium layer ``z* = f_module(z*, x)``.

    The forward solve runs under ``torch.no_grad()`` (no activations stored), then the
    chosen backward mode reattaches ``z*`` to the parameters of ``f_module`` and to ``x``:
    ``"implicit"`` solves the adjoint fixed point with ``solver`` and ``backward_options``,
    ``"phantom"`` backprops through ``phantom_steps`` damped steps from ``z*``, and
    ``"unrolled"`` backprops through ``backward_options.max_iter`` plain steps from ``z0``.
    The output is the solver's ``z*`` in every mode.

    Args:
        f_module: ``f_module(z, x) -> z_next``, batched, same shape as ``z``. If it has a
            ``state_shape(x) -> tuple`` method, ``z0`` defaults to zeros of that shape (dtype
            and device of ``x``); otherwise ``forward`` requires ``z0``.
        solver: ``solve(f, z0, options) -> (z, stats)``, used forward and for the adjoint.
        forward_options: options of the forward solve.
        backward: ``"implicit"``, ``"phantom"`` or ``"unrolled"``.
        backward_options: options of the adjoint solve (``"implicit"``); its ``max_iter`` is
            the number of steps for ``"unrolled"``. Defaults to ``forward_options``.
        phantom_steps: differentiable steps of the phantom gradient (1: Jacobian-free).
        phantom_damping: damping λ of those steps, in (0, 1].

    Shapes: ``x`` (batch, ...) → ``z*`` (batch, ...) of ``f_module``'s state.
    After each call, ``last_forward_stats`` holds the forward solve's :class:`SolverStats`
    (or those handed to :meth:`attach` with a fixed point found elsewhere);
    ``last_backward_stats`` those of the adjoint solve once ``backward()`` has run through
    that output (``None`` before, and always in the other modes).
    """

    def __init__(
        self,
        f_module: nn.Module,
        solver: Solver,
        *,
        forward_options: SolverOptions | None = None,
        backward: BackwardMode = "implicit",
        backward_options: SolverOptions | None = None,
        phantom_steps: int = 1,
        phantom_damping: float = 1.0,
    ) -> None:
        super().__init__()
        if not callable(solver):
            raise TypeError(f"solver={solver!r}: expected solve(f, z0, options) -> (z, stats)")
        if backward not in BACKWARD_MODES:
            raise ValueError(f"backward={backward!r}: use one of {BACKWARD_MODES}")
        forward_options = SolverOptions() if forward_options is None else forward_options
        backward_options = forward_options if backward_options is None else backward_options
        for name, value in (
            ("forward_options", forward_options),
            ("backward_options", backward_options),
        ):
            if not isinstance(value, SolverOptions):
                raise TypeError(f"{name}={value!r}: expected a SolverOptions")
        if phantom_steps < 1:
            raise ValueError(f"phantom_steps={phantom_steps}: must be >= 1")
        if not 0 < phantom_damping <= 1:
            raise ValueError(f"phantom_damping={phantom_damping}: must be in (0, 1]")
        self.f_module = f_module
        self.solver = solver
        self.forward_options = forward_options
        self.backward = backward
        self.backward_options = backward_options
        self.phantom_steps = phantom_steps
        self.phantom_damping = phantom_damping
        self.last_forward_stats: SolverStats | None = None
        self._backward_state = BackwardState()

    @property
    def last_backward_stats(self) -> SolverStats | None:
        return self._backward_state.last_backward_stats

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        state_shape = getattr(self.f_module, "state_shape", None)
        if state_shape is None:
            raise TypeError(
                f"{type(self.f_module).__name__} has no state_shape(x) method: pass z0= to "
                "DEQ.forward or give the module a state_shape(x) -> tuple method"
            )
        return torch.zeros(tuple(state_shape(x)), dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor, z0: torch.Tensor | None = None) -> torch.Tensor:
        z0 = self.initial_state(x) if z0 is None else z0
        with torch.no_grad():
            z_star, stats = self.solver(
                lambda z: self.f_module(z, x), z0.detach(), self.forward_options
            )
        return self.attach(x, z_star, stats, z0)

    def attach(
        self,
        x: torch.Tensor,
        z_star: torch.Tensor,
        stats: SolverStats,
        z0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Make ``z_star``, a fixed point of ``f_module(·, x)`` found by any means (the
        solver, the analog relaxation), this layer's output: ``stats`` become
        ``last_forward_stats`` and the gradient of the backward mode is attached at
        ``z_star`` (``z0``, default ``initial_state(x)``, starts the ``"unrolled"`` mode).
        Every evaluation of ``f_module`` for the gradient happens in this call."""
        self.last_forward_stats = stats
        # A fresh state per call: stats of an older graph's backward never show up as this one's.
        self._backward_state = BackwardState()
        needs_grad = x.requires_grad or any(p.requires_grad for p in self.f_module.parameters())
        if not (torch.is_grad_enabled() and needs_grad):
            return z_star.detach()

        def f(z: torch.Tensor) -> torch.Tensor:
            return self.f_module(z, x)

        return attach_backward(
            self.backward,
            f,
            z_star,
            solver=self.solver,
            options=self.backward_options,
            state=self._backward_state,
            phantom_steps=self.phantom_steps,
            phantom_damping=self.phantom_damping,
            z0=self.initial_state(x) if z0 is None else z0,
            unroll_steps=self.backward_options.max_iter,
        )

    def extra_repr(self) -> str:
        fo, bo = self.forward_options, self.backward_options
        text = f"backward={self.backward!r}, forward_tol={fo.tol}, forward_max_iter={fo.max_iter}"
        if self.backward == "phantom":
            return text + f", phantom_steps={self.phantom_steps}, damping={self.phantom_damping}"
        if self.backward == "unrolled":
            return text + f", unroll_steps={bo.max_iter}"
        return text + f", backward_tol={bo.tol}, backward_max_iter={bo.max_iter}"
