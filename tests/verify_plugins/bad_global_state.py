"""Planted bug: hidden global state: the last inner solution is kept in a module global and used as the next
call's starting point (a warm start the estimator does not declare through Estimate.state)."""
from blobench import harness
from blobench.core.estimator_base import INNER_LR, INNER_STEPS
from blobench.core.numerics import inner_gd

_LAST = {}


@harness.register_estimator("vp-global-state")
class GlobalState(harness.Estimator):
    """First-order estimate grad_x f - grad2_xy g grad_y f / L at y_D, warm-started from a global."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR}

    def estimate(self, oracles, x, noise, state=None):
        y0 = _LAST.get("y", oracles.init_inner(x))
        yD, _ = inner_gd(oracles, x, y0, self.inner_steps(oracles), self.inner_lr(oracles), lambda k: None)
        _LAST["y"] = yD.detach()
        gx, gy = oracles.grad_f(x, yD)
        return harness.Estimate(gx - oracles.jvp(x, yD, gy / float(oracles.constants["L"])))
