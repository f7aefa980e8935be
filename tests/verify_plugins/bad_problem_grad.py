"""Planted bug: a plugin problem whose closed-form hypergradient drops the implicit term."""
import torch

from blobench import harness
from blobench.problems.quadratic import Quadratic


@harness.register_problem("vp-wrong-hypergradient")
class WrongGrad(Quadratic):
    """The quadratic with grad Phi = rho x (the implicit term B^T A^-1 (y* - c) forgotten)."""

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.p["rho"] * x
