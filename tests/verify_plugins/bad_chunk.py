"""Planted bug: not safe under chunking: estimate_chunk centres the noise over the chunk it is handed (a
control variate across draws), so a draw's estimate depends on which draws share its chunk."""
import torch

from blobench import harness
from blobench.core.oracles import ORACLE_NAMES


@harness.register_estimator("vp-chunk")
class ChunkUnsafe(harness.Estimator):
    """grad Phi + (xi - mean of xi over the chunk)."""

    params = {}

    def draw(self, problem, generator, n):
        return {"xi": torch.randn(n, problem.dim_x, generator=generator, dtype=torch.float64)}

    def estimate(self, oracles, x, noise, state=None):
        return harness.Estimate(oracles.exact(x) + noise["xi"])

    def estimate_chunk(self, oracles, x, noise):
        xi = noise["xi"]
        m = xi.shape[0]
        g = oracles.exact(x)
        calls = {k: torch.zeros(m, dtype=torch.long) for k in ORACLE_NAMES}
        calls["exact"] = torch.ones(m, dtype=torch.long)
        return g.unsqueeze(0) + xi - xi.mean(0, keepdim=True), calls
