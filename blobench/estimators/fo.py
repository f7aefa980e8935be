"""First-order estimator: every second-derivative term dropped.

    estimate = grad_x f(x, y_D) + (dy_0/dx)^T grad_y f(x, y_D)
i.e. y_D is treated as if it moved with x only through its initialisation. On
problem-based BLO (y_0 independent of x) this is grad_x f(x, y_D), which misses the
implicit term -grad2_xy g [grad2_yy g]^-1 grad_y f. On algorithm-based BLO with
y_0 = x it is first-order MAML / FO-BLO, g_FO = grad L(phi_r) (Finn et al. 2017;
Likhosherstov et al. 2021, "FOM", Section 2).

Oracle accounting (tested): D grad_y g, 1 grad_x f, 1 grad_y f.
"""
from __future__ import annotations

from blobench import harness
from blobench.core.theory import BiasFloor, CostFormula
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, INNER_STEPS, batch_of, draw_batches, step_batches
from blobench.core.numerics import inner_gd


@harness.register_estimator("fo")
class FirstOrder(harness.Estimator):
    """First-order (FO-BLO / FOMAML): grad of f at y_D with all second-order terms dropped."""

    theory = (
        BiasFloor("inner_steps", "Likhosherstov et al. 2021, Sec. 2 (FOM); Ji, Yang & Liang 2021, Sec. 1",
                  reason="drops the implicit term -grad2_xy g [grad2_yy g]^-1 grad_y f, which inner steps do not restore"),
        CostFormula(lambda p: {"grad_y_g": p["inner_steps"], "grad_x_f": 1, "grad_y_f": 1}, "D grad_y g, 1 grad_x f, 1 grad_y f"),
    )

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "batch_size": BATCH_SIZE}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"inner": self.inner_steps(problem), "outer": 0}, self.p["batch_size"])

    def estimate(self, oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        y0 = oracles.init_inner(x)
        yD, _ = inner_gd(oracles, x, y0, D, lr, step_batches(oracles, noise))
        gx, gy = oracles.grad_f(x, yD, batch_of(noise, "outer"))
        return harness.Estimate(gx + oracles.init_vjp(x, gy))
