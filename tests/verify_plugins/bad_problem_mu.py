"""Planted bug: a plugin problem declaring mu 10x too large."""
from blobench import harness
from blobench.problems.quadratic import Quadratic


@harness.register_problem("vp-wrong-mu")
class WrongMu(Quadratic):
    """The quadratic, declaring mu ten times its true value."""

    @property
    def constants(self):
        c = dict(super().constants)
        c["mu"] = 10 * c["mu"]
        return c
