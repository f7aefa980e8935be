"""Counted first- and second-order oracles (the complexity measures of Ji et al. 2021).

Estimators see a problem only through an :class:`Oracles` object, which counts
    grad_x_f  Gc(f), x part     grad_y_f  Gc(f), y part     grad_y_g  Gc(g)
    hvp       HV: grad2_yy g v  jvp       JV: grad2_xy g v (the cross product, a dim_x vector)
    exact     calls of the problem's own ground truth (the ``exact`` estimator only)
All oracles are built from torch.func transforms so that they compose with vmap.
Under vmap an oracle call is counted once per batched call, i.e. once per draw.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.func import grad, vjp

from .problem_base import Batch, Problem, Target

ORACLE_NAMES = ("grad_x_f", "grad_y_f", "grad_y_g", "hvp", "jvp", "exact")


class Oracles:
    def __init__(self, problem: Problem):
        self.problem = problem
        self.counts: dict[str, int] = dict.fromkeys(ORACLE_NAMES, 0)

    # metadata the estimators may read freely
    @property
    def target(self) -> Target:
        return self.problem.target

    @property
    def constants(self) -> dict[str, float]:
        return self.problem.constants

    @property
    def dim_x(self) -> int:
        return self.problem.dim_x

    @property
    def dim_y(self) -> int:
        return self.problem.dim_y

    def reset(self) -> None:
        for k in self.counts:
            self.counts[k] = 0

    def _count(self, name: str, k: int = 1) -> None:
        self.counts[name] += k

    # -- first order -------------------------------------------------------------------
    def grad_x_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        self._count("grad_x_f")
        return grad(self.problem.outer, argnums=0)(x, y, batch)

    def grad_y_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        self._count("grad_y_f")
        return grad(self.problem.outer, argnums=1)(x, y, batch)

    def grad_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_x f, grad_y f) in one backward pass; counts one of each."""
        self._count("grad_x_f")
        self._count("grad_y_f")
        return grad(self.problem.outer, argnums=(0, 1))(x, y, batch)

    def grad_y_g(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        self._count("grad_y_g")
        return grad(self.problem.inner, argnums=1)(x, y, batch)

    # -- second order ------------------------------------------------------------------
    def _gyg(self, batch: Batch):
        return grad(self.problem.inner, argnums=1)

    def hvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """grad2_yy g(x, y) v."""
        self._count("hvp")
        gy = grad(self.problem.inner, argnums=1)
        _, pull = vjp(lambda y_: gy(x, y_, batch), y)
        return pull(v)[0]

    def jvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """grad2_xy g(x, y) v = d/dx <grad_y g(x, y), v> (a dim_x vector)."""
        self._count("jvp")
        gy = grad(self.problem.inner, argnums=1)
        _, pull = vjp(lambda x_: gy(x_, y, batch), x)
        return pull(v)[0]

    def hvp_jvp(
        self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad2_yy g v, grad2_xy g v) from one vector-Jacobian product; counts one HV and one JV."""
        self._count("hvp")
        self._count("jvp")
        gy = grad(self.problem.inner, argnums=1)
        _, pull = vjp(lambda x_, y_: gy(x_, y_, batch), x, y)
        jx, jy = pull(v)
        return jy, jx

    # -- initialisation of the inner variable (not an oracle of the complexity theory) --
    def init_inner(self, x: torch.Tensor) -> torch.Tensor:
        return self.problem.init_inner(x)

    def init_vjp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(d y_0 / d x)^T v; zero when y_0 does not depend on x."""
        _, pull = vjp(self.problem.init_inner, x)
        return pull(v)[0]

    # -- ground truth --------------------------------------------------------------------
    def exact(self, x: torch.Tensor) -> torch.Tensor:
        self._count("exact")
        return self.problem.hypergradient(x).to(dtype=x.dtype)

    def snapshot(self) -> dict[str, Any]:
        return dict(self.counts)
