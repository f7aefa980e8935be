"""Planted bug: declares Unbiased, but its noise has mean 0.1 per coordinate (a tenth of its standard deviation) (a biased "unbiased" estimator,
e.g. zeroth-order directions from the wrong distribution)."""
import torch

from blobench import harness
from blobench.core.theory import Unbiased


@harness.register_estimator("vp-biased")
class Biased(harness.Estimator):
    """grad Phi + xi, xi ~ N(0.1, 1) per coordinate; declares unbiasedness."""

    params = {}
    theory = (Unbiased("planted: claims E[xi] = 0"),)

    def draw(self, problem, generator, n):
        return {"xi": 0.1 + torch.randn(n, problem.dim_x, generator=generator, dtype=torch.float64)}

    def estimate(self, oracles, x, noise, state=None):
        return harness.Estimate(oracles.exact(x) + noise["xi"])
