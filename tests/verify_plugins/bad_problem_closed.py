"""Planted bug: a plugin problem whose closed-form grad_x g forgets the 1/2 x'Kx term's gradient (autograd, which
the oracles use without closed forms, has it)."""
from blobench import harness
from blobench.core.params import Param
from blobench.problems.simulated_quadratic import SimulatedQuadratic


@harness.register_problem("vp-wrong-closed-form")
class WrongClosedForm(SimulatedQuadratic):
    """A small simulated quadratic whose closed_grad drops K x from grad_x."""

    params = {**SimulatedQuadratic.params,
              "n_inner": Param("int", default=24, low=1), "n_outer": Param("int", default=20, low=1),
              "dim_inner": Param("int", default=6, low=2), "dim_outer": Param("int", default=3, low=2)}

    def closed_grad(self, side, argnums, x, y, batch=None):
        H, K, C, a, b = self.coefficients(side, batch)
        return tuple(b + C @ y if i == 0 else ((a + C.T @ x) + 0.5 * (H @ y)) + H.T @ (0.5 * y) for i in argnums)
