"""Planted bug: the Neumann series one term short (N - 1 HV products, the sum missing its last term) while the
declared cost formula says N HV (the counts themselves are honest)."""
import importlib.util
import os

spec = importlib.util.spec_from_file_location("vp_good_neumann_base2", os.path.join(os.path.dirname(__file__), "good_neumann.py"))
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)

from blobench import harness  # noqa: E402


@harness.register_estimator("vp-neumann-short")
class NeumannShort(base.DampedNeumann):
    """Damped Neumann with one term fewer than declared."""

    theory = base.DampedNeumann.theory

    def neumann(self, hv, b, n, eta):
        return super().neumann(hv, b, max(n - 1, 0), eta)
