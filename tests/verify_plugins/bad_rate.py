"""Planted bug: the Neumann step is silently halved, so the error contracts like 1 - eta mu / 2 while the
declaration still promises 1 - eta mu (a step-size schedule silently ignored)."""
import importlib.util
import os

spec = importlib.util.spec_from_file_location("vp_good_neumann_base", os.path.join(os.path.dirname(__file__), "good_neumann.py"))
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)

from blobench import harness  # noqa: E402


@harness.register_estimator("vp-bad-rate")
class BadRate(base.DampedNeumann):
    """Damped Neumann with the step halved inside (declares the undamped rate)."""

    theory = base.DampedNeumann.theory
    ETA_FACTOR = 0.5
