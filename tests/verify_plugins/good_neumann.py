"""A correct plugin estimator: damped Neumann AID (the worked example of docs/verify.md).

    y_D = D steps of GD on g from y_0;  v = eta sum_{i=0}^{N} (I - eta H)^i grad_y f(x, y_D)  (N HV);
    estimate = grad_x f(x, y_D) - grad2_xy g(x, y_D) v.
Its error contracts like 1 - alpha mu in D and 1 - eta mu in N (Ji, Yang & Liang 2021, Lemma 6).
"""
from blobench import harness
from blobench.core.estimator_base import INNER_LR, INNER_STEPS, SOLVER_LR, SOLVER_STEPS, batch_of, draw_batches, step_batches
from blobench.core.numerics import inner_gd
from blobench.core.theory import GD_SOURCE, NEUMANN_SOURCE, CostFormula, Rate, gd_rate, neumann_rate


@harness.register_estimator("vp-damped-neumann")
class DampedNeumann(harness.Estimator):
    """Damped Neumann AID: D GD steps, then the Neumann series with step eta, then one cross product."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "solver_steps": SOLVER_STEPS, "solver_lr": SOLVER_LR}
    theory = (
        Rate("inner_steps", gd_rate, GD_SOURCE),
        Rate("solver_steps", neumann_rate, NEUMANN_SOURCE),
        CostFormula(lambda p: {"grad_y_g": p["inner_steps"], "hvp": p["solver_steps"], "jvp": 1, "grad_x_f": 1, "grad_y_f": 1},
                    "D grad_y g, N HV, 1 JV, 1 grad f"),
    )
    ETA_FACTOR = 1.0  # the planted rate bug multiplies the step by 1/2 without saying so

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0, "hess": 0})

    def neumann(self, hv, b, n, eta):
        v, p = eta * b, eta * b
        for _ in range(n):
            p = p - eta * hv(p)
            v = v + p
        return v

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        eta = self.p.get("solver_lr") or 1.0 / float(oracles.constants["L"])
        yD, _ = inner_gd(oracles, x, oracles.init_inner(x), D, lr, step_batches(oracles, noise))
        gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
        lin = oracles.linearize(x, yD, batch_of(noise, "hess"))
        v = self.neumann(lin.hv, gy, self.p["solver_steps"], eta * self.ETA_FACTOR)
        return harness.Estimate(gx - lin.jv(v))
