"""An independent instrumented oracle layer for the oracle-honesty check (issue 22, item 3).

The estimator's reported counts (``Estimate.calls``, or the counts of the :class:`Oracles` it was handed)
are compared with evaluations measured underneath it, where it cannot see or influence them:

- the problem's ``outer`` (f) and ``inner`` (g) are replaced, on a private shallow copy, by wrappers that
  count every evaluation (under torch.func.vmap an evaluation counts once per batched row, so an estimator
  that vmaps a problem function over K points is charged K);
- the estimator is handed :class:`ReferenceOracles`, whose every counted oracle evaluates f or g exactly
  once per call and nothing else does: joint calls (``grad_f``, ``grad_g``, ``hv_jv``) are split into their
  parts and a :class:`ReferenceLinearization` evaluates g afresh for each product. So for an honest
  estimator, per estimate,

      evaluations of f = grad_x_f + grad_y_f + f_value
      evaluations of g = grad_y_g + grad_x_g + g_value + hvp + jvp
      ground-truth calls = exact

  and any gap is work the estimator did without counting it (or counts it reports without doing it).
The numbers an estimate returns through these oracles equal the production ones in exact arithmetic (the
same derivatives, only not shared); the check uses the counts, never the estimate.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch._C import _functorch as _ft
from torch.func import grad, vjp

from blobench.core.oracles import Oracles
from blobench.core.problem_base import Batch


class Tally:
    """Evaluations measured by the probe."""

    def __init__(self) -> None:
        self.f = 0
        self.g = 0
        self.exact = 0
        self.paused = 0


def _rows(*ts: Any) -> int:
    """How many rows one call evaluates: the product of the vmap batch sizes wrapping the most-batched input."""
    best = 1
    for t in ts:
        m = 1
        while isinstance(t, torch.Tensor) and _ft.is_batchedtensor(t):
            bdim = _ft.maybe_get_bdim(t)
            u = _ft.get_unwrapped(t)
            m *= int(u.shape[bdim])
            t = u
        best = max(best, m)
    return best


def instrument(problem) -> tuple[Any, Tally]:
    """(a private copy of ``problem`` whose f, g and ground truth are counted, its :class:`Tally`)."""
    tally = Tally()
    q = copy.copy(problem)
    f0, g0, hg0 = problem.outer, problem.inner, problem.hypergradient

    def outer(x, y, batch=None):
        if not tally.paused:
            tally.f += _rows(x, y)
        return f0(x, y, batch)

    def inner(x, y, batch=None):
        if not tally.paused:
            tally.g += _rows(x, y)
        return g0(x, y, batch)

    def hypergradient(x):
        tally.exact += 1
        tally.paused += 1
        try:
            return hg0(x)
        finally:
            tally.paused -= 1

    q.outer, q.inner, q.hypergradient = outer, inner, hypergradient
    return q, tally


class ReferenceLinearization:
    """The :class:`~blobench.core.oracles.Linearization` interface, one g evaluation per product."""

    def __init__(self, o: "ReferenceOracles", x, y, batch, value: bool):
        self._o, self._x, self._y, self._b = o, x, y, batch
        self._value = o._gy(x, y, batch) if value else None

    @property
    def value(self) -> torch.Tensor:
        # reading grad_y g without having asked for it (value=False) evaluates g here, uncounted by the oracles:
        # the probe sees it, so an estimator relying on it is caught
        return self._value if self._value is not None else self._o._gy(self._x, self._y, self._b)

    def hv(self, v):
        return self._o.hvp(self._x, self._y, v, self._b)

    def jv(self, v):
        return self._o.jvp(self._x, self._y, v, self._b)

    def hv_jv(self, v):
        return self.hv(v), self.jv(v)


class ReferenceOracles(Oracles):
    """Oracles whose every counted call evaluates f or g exactly once (see the module docstring)."""

    def _gy(self, x, y, batch):
        return grad(self.problem.inner, argnums=1)(x, y, batch)

    def grad_x_f(self, x, y, batch: Batch = None):
        self._count("grad_x_f")
        return grad(self.problem.outer, argnums=0)(x, y, batch)

    def grad_y_f(self, x, y, batch: Batch = None):
        self._count("grad_y_f")
        return grad(self.problem.outer, argnums=1)(x, y, batch)

    def grad_f(self, x, y, batch: Batch = None):
        return self.grad_x_f(x, y, batch), self.grad_y_f(x, y, batch)

    def grad_y_g(self, x, y, batch: Batch = None):
        self._count("grad_y_g")
        return self._gy(x, y, batch)

    def grad_x_g(self, x, y, batch: Batch = None):
        self._count("grad_x_g")
        return grad(self.problem.inner, argnums=0)(x, y, batch)

    def grad_g(self, x, y, batch: Batch = None):
        return self.grad_x_g(x, y, batch), self.grad_y_g(x, y, batch)

    def linearize(self, x, y, batch: Batch = None, value: bool = False, joint: bool = False):
        if value:
            self._count("grad_y_g")
        return ReferenceLinearization(self, x, y, batch, value)

    def hvp(self, x, y, v, batch: Batch = None):
        self._count("hvp")
        gy = grad(self.problem.inner, argnums=1)
        return vjp(lambda y_: gy(x, y_, batch), y)[1](v)[0]

    def jvp(self, x, y, v, batch: Batch = None):
        self._count("jvp")
        gy = grad(self.problem.inner, argnums=1)
        return vjp(lambda x_: gy(x_, y, batch), x)[1](v)[0]

    def hvp_jvp(self, x, y, v, batch: Batch = None):
        return self.hvp(x, y, v, batch), self.jvp(x, y, v, batch)

    def f_values(self, xs, ys, batch: Batch = None, batched: bool = False):
        out = []
        for k in range(xs.shape[0]):
            b = {kk: vv[k] for kk, vv in batch.items()} if (batched and batch is not None) else batch
            out.append(self.f_value(xs[k], ys[k], b))
        return torch.stack(out)

    def grad_y_g_points(self, xs, ys, batch: Batch = None):
        return torch.stack([self.grad_y_g(xs[k], ys[k], batch) for k in range(xs.shape[0])])


def measured_vs_reported(reported: dict[str, int], tally: Tally) -> dict[str, tuple[int, int]]:
    """{quantity: (measured by the probe, implied by the reported counts)} for f, g and ground truth."""
    r = lambda k: int(reported.get(k, 0))  # noqa: E731
    return {"f evaluations": (tally.f, r("grad_x_f") + r("grad_y_f") + r("f_value")),
            "g evaluations": (tally.g, r("grad_y_g") + r("grad_x_g") + r("g_value") + r("hvp") + r("jvp")),
            "exact calls": (tally.exact, r("exact"))}
