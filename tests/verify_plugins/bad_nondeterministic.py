"""Planted bug: randomness from torch's global generator instead of draw() (not reproducible from a seed)."""
import torch

from blobench import harness


@harness.register_estimator("vp-nondeterministic")
class NonDeterministic(harness.Estimator):
    """grad Phi + 1e-3 N(0, I) from the global RNG."""

    params = {}
    vmappable = False  # torch.randn under vmap would raise; the loop runs it

    def estimate(self, oracles, x, noise, state=None):
        return harness.Estimate(oracles.exact(x) + 1e-3 * torch.randn(x.shape, dtype=x.dtype))
