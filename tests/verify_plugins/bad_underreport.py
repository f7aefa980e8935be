"""Planted bug: one Hessian-vector product more than it reports (an uncounted HV, reported counts overridden)."""
import torch

from blobench import harness
from blobench.core.estimator_base import INNER_LR, INNER_STEPS, SOLVER_STEPS
from blobench.core.numerics import inner_gd
from blobench.core.oracles import Oracles


@harness.register_estimator("vp-underreport")
class UnderReport(harness.Estimator):
    """AID with Neumann; reports N - 1 HV while computing N."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "solver_steps": SOLVER_STEPS}

    def estimate(self, oracles: Oracles, x, noise, state=None):
        D, lr = self.inner_steps(oracles), self.inner_lr(oracles)
        eta = 1.0 / float(oracles.constants["L"])
        yD, _ = inner_gd(oracles, x, oracles.init_inner(x), D, lr, lambda k: None)
        gx, gy = oracles.grad_f(x, yD)
        lin = oracles.linearize(x, yD)
        v, p = eta * gy, eta * gy
        for _ in range(self.p["solver_steps"]):
            p = p - eta * lin.hv(p)
            v = v + p
        N = self.p["solver_steps"]
        calls = {"grad_y_g": torch.tensor(D), "hvp": torch.tensor(max(N - 1, 0)), "jvp": torch.tensor(1),
                 "grad_x_f": torch.tensor(1), "grad_y_f": torch.tensor(1)}
        return harness.Estimate(gx - lin.jv(v), calls=calls)
