"""HOAG: hyperparameter optimisation with approximate gradient (Pedregosa, ICML 2016, arXiv 1602.02355).

Algorithm 1 of the paper, at outer iteration k with tolerance eps_k = max(tol * tol_decay^k, tol_min)
(the floor keeps a converged run from spending max_inner / max_solver calls per step on a
tolerance below what float64 can reach):

  (i)   y_k: solve the inner problem until ||grad_y g(x_k, y)|| <= eps_k, warm-started at y_{k-1}
        (gradient descent, step inner_lr, at most max_inner steps);
  (ii)  q_k: solve grad2_yy g(x_k, y_k) q = grad_y f(x_k, y_k) until the residual norm is <= eps_k,
        warm-started at q_{k-1} (conjugate gradient from :func:`blobench.core.numerics.cg`, restarted from
        the current residual every ``solver_steps`` iterations; at most max_solver matvecs);
  (iii) p_k = grad_x f(x_k, y_k) - grad2_xy g(x_k, y_k) q_k, the approximate hypergradient;
  (iv)  x_{k+1} = x_k - p_k / L (taken by the shared outer loop with its outer_lr).

Theorem 1 (Pedregosa 2016): if the tolerances are summable (sum eps_k < inf, here tol_decay < 1),
the iterates reach a stationary point; with a constant tolerance (tol_decay = 1) the error of p_k
does not vanish (the negative control of claim ``hoag-summable-tolerance``). The paper's adaptive
step-size rule and its L-BFGS inner solver are not reproduced: GD and the outer loop's step are used.

The loops stop on data-dependent tolerances, so ``estimate`` cannot run under vmap
(``vmappable = False``: harness.estimate runs draws one by one). The problem is used at full
batch (HOAG is a deterministic method). Oracle calls are those actually executed: the inner
grad_y g evaluations (the last one only checks the tolerance), the CG matvecs (HV), 1 grad_x f,
1 grad_y f, 1 JV.
"""
from __future__ import annotations

import torch

from blobench import harness
from blobench.core.theory import Converges
from blobench.core.estimator_base import INNER_LR
from blobench.core.numerics import cg
from blobench.core.params import Param


@harness.register_estimator("hoag")
class HOAG(harness.Estimator):
    """HOAG: inner solve and CG to a decreasing tolerance eps_k, both warm-started (Pedregosa 2016, Alg. 1)."""

    theory = (
        Converges(60, "Pedregosa 2016, Th. 1 (summable tolerances reach a stationary point)"),
    )

    vmappable = False  # tolerance-driven loops (see the module docstring)
    params = {"inner_lr": INNER_LR,
              "tol": Param("float", default=1e-1, low=0.0, low_open=True, doc="eps_0: tolerance of the first outer iteration"),
              "tol_decay": Param("float", default=0.9, low=0.0, high=1.0, low_open=True, doc="eps_k = tol * tol_decay^k (1: constant)"),
              "tol_min": Param("float", default=1e-12, low=0.0, doc="floor of eps_k"),
              "solver_steps": Param("int", default=10, low=1, doc="CG iterations between residual checks (restart period)"),
              "max_inner": Param("int", default=1000, low=1, doc="cap on inner GD steps per outer iteration"),
              "max_solver": Param("int", default=1000, low=1, doc="cap on CG matvecs per outer iteration")}

    def estimate(self, oracles, x, noise, state=None):
        if oracles.target.kind != "argmin":  # full-batch oracles need a population g (found by blobench verify: a TypeError before)
            from blobench.core.errors import ParameterError

            raise ParameterError(f"estimator 'hoag' needs a problem-based (argmin) target; {oracles.problem.name!r} is "
                                 "algorithm-based (its oracles need a task)")
        k = 0 if state is None else int(state["k"])
        eps = max(float(self.p["tol"]) * float(self.p["tol_decay"]) ** k, float(self.p["tol_min"]))
        lr = self.inner_lr(oracles)
        y = oracles.init_inner(x) if state is None else state["y"].detach()
        for _ in range(self.p["max_inner"]):
            gy_g = oracles.grad_y_g(x, y)
            if float(torch.linalg.norm(gy_g)) <= eps:
                break
            y = y - lr * gy_g
        gx, gy = oracles.grad_f(x, y)
        hv = lambda v: oracles.hvp(x, y, v)  # noqa: E731
        q = torch.zeros_like(gy) if state is None else state["q"].detach()
        used, N = 0, int(self.p["solver_steps"])
        while used < self.p["max_solver"]:
            r = gy - hv(q)
            used += 1
            if float(torch.linalg.norm(r)) <= eps:
                break
            n = min(N, int(self.p["max_solver"]) - used)
            if n <= 0:
                break
            q = q + cg(hv, r, n)
            used += n
        p = gx - oracles.jvp(x, y, q)
        return harness.Estimate(p, state={"y": y.detach(), "q": q.detach(), "k": torch.tensor(k + 1)})
