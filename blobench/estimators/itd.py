"""ITD: iterative differentiation (reverse mode through the inner solver).

y_0 = init(x), y_{k+1} = y_k - alpha grad_y g(x, y_k; B_k) for k < D, and the estimate is
the exact derivative of f(x, y_D(x)):
    grad_x f(x, y_D) + sum_k -alpha grad2_xy g(x, y_k) v_{k+1} + (dy_0/dx)^T v_0,
    v_D = grad_y f(x, y_D), v_k = (I - alpha grad2_yy g(x, y_k)) v_{k+1}.
This is ITD-BiO's hypergradient (Ji, Yang, Liang 2021, Algorithm 1, eq. (4); Franceschi
et al. 2017 reverse-mode), and MAML's exact meta-gradient when the problem is unrolled.

``warm_start=true`` is ITD-BiO's Algorithm 1 exactly: y_0 of outer step k is y_D of step
k-1 (carried in ``Estimate.state``), treated as a constant (no (dy_0/dx)^T v_0 term).

``itd-truncated`` backpropagates only through the last ``truncate`` of the D steps
(truncated back-propagation, Shaban et al. 2019); the (dy_0/dx)^T v_0 term is kept only
when nothing is truncated (truncate >= D), where it equals ``itd``.

``inner_solver="agd"`` runs Nesterov's accelerated gradient instead of GD and differentiates through it
(:func:`blobench.core.numerics.unroll_backward_agd`): the same D grad_y g, K HV and K JV.

Oracle accounting (tested): D grad_y g (forward), K HV + K JV (backward, one each per
kept step; K = D for ``itd``, min(truncate, D) for ``itd-truncated``), 1 grad_x f, 1 grad_y f.
"""
from __future__ import annotations

from blobench import harness
from blobench.core.theory import Rate, BiasFloor, CostFormula, Converges, gd_rate, GD_SOURCE
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, INNER_SOLVER, INNER_STEPS, batch_of, draw_batches, step_batches
from blobench.core.numerics import inner_gd, inner_solve, strongly_convex_momentum, unroll_backward, unroll_backward_agd
from blobench.core.errors import ParameterError
from blobench.core.params import Param

WARM_START = Param("bool", default=False, doc="carry y (and v for AID) across outer iterations (Ji et al. 2021, Alg. 1)")


@harness.register_estimator("itd")
class ITD(harness.Estimator):
    """ITD: reverse-mode differentiation through inner_steps of gradient descent (Ji et al. 2021, Alg. 1)."""

    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE, short="1-alpha*mu, Ji+ 2021 Prop. 2", poly=True),
        CostFormula(lambda p: {"grad_y_g": p["inner_steps"], "hvp": p["inner_steps"], "jvp": p["inner_steps"], "grad_x_f": 1,
                               "grad_y_f": 1}, "Ji, Yang & Liang 2021, Alg. 1 (ITD-BiO): D steps forward, D HV + D JV backward"),
        Converges(200, "Ji, Yang & Liang 2021, Th. 2 (ITD-BiO reaches an eps-stationary point)", params={"inner_steps": 60}),
    )

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE, "warm_start": WARM_START,
              "inner_solver": INNER_SOLVER}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0}, self.p["batch_size"])

    def kept(self, D: int) -> int:
        return D

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        bf = step_batches(oracles, noise)
        warm = bool(self.p.get("warm_start")) and state is not None and "y" in state
        y0 = state["y"].detach() if warm else oracles.init_inner(x)
        solver = self.p.get("inner_solver", "gd")
        K = self.kept(D)
        if solver == "agd":
            mu = oracles.constants.get("mu")
            mom = None if mu is None else strongly_convex_momentum(lr, float(mu))
            yD, traj = inner_solve(oracles, x, y0, D, lr, solver, mom, bf, keep=True)
            gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
            cx, v0 = unroll_backward_agd(oracles, x, traj, gy, lr, D, mom, bf, truncate=K)
        else:
            # the kept steps' gradient graphs are built once in the forward pass and reused backwards
            yD, lins = inner_gd(oracles, x, y0, D, lr, bf, linearize_from=D - K)
            gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
            cx, v0 = unroll_backward(oracles, x, None, y0, gy, lr, D, bf, truncate=K, lins=lins)
        g = gx + cx
        if K >= D and not warm:
            g = g + oracles.init_vjp(x, v0)
        return harness.Estimate(g, state={"y": yD.detach()} if self.p.get("warm_start") else None)


@harness.register_estimator("itd-truncated")
class ITDTruncated(ITD):
    """Truncated ITD: backpropagate through the last `truncate` of inner_steps (Shaban et al. 2019; Ji et al. 2021 Sec. 3)."""

    theory = (
        BiasFloor("inner_steps", "Shaban et al. 2019, Prop. 3.1 (truncated back-propagation)",
                  reason="with truncate fixed the bias decays in the kept steps only, not in inner_steps"),
        CostFormula(lambda p: {"grad_y_g": p["inner_steps"], "hvp": min(p["truncate"], p["inner_steps"]),
                               "jvp": min(p["truncate"], p["inner_steps"]), "grad_x_f": 1, "grad_y_f": 1},
                    "Shaban et al. 2019: K = min(truncate, D) backward steps"),
    )

    params = {**ITD.params, "truncate": Param("int", default=1, low=0, doc="steps kept by truncated backpropagation")}

    def __init__(self, **params):
        super().__init__(**params)
        D = self.p.get("inner_steps")
        if D is not None and int(self.p["truncate"]) > int(D):  # contradictory: it was clipped to D silently
            raise ParameterError(f"estimator 'itd-truncated': truncate={self.p['truncate']} exceeds inner_steps={D} "
                                 "(at most inner_steps steps can be kept; truncate = inner_steps is full ITD)")

    def kept(self, D: int) -> int:
        return min(int(self.p["truncate"]), D)
