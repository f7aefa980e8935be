"""Ji 2025's nonconvex-strongly-convex lower bound as executable claims, on the paper's own instance ``ji-ncsc``.

Source: K. Ji, "Lower Complexity Bounds for Nonconvex-Strongly-Convex Bilevel Optimization with First-Order Oracles",
arXiv 2511.19656 v2, Theorem 1, eq. (6)-(8) and Definition 4 (zero-respecting first-order bilevel methods). The
instance and its constants are in blobench/problems/ji_ncsc.py.

Claim (a) of issue 24 is here: the exact count. Claims (b) (the kappa^{3/2} eps^{-2} exponents of calls to
||grad H|| <= eps) and (c) (Theorem 2's Bernoulli oracle) are not built yet (docs/lower_bounds.md says so).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable
from unittest import mock

import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.outer import outer_loop

CITE = "K. Ji, arXiv 2511.19656 v2: Theorem 1, eq. (6)-(8), Definition 4"

_LOGGED = ("grad_x_f", "grad_y_f", "grad_f", "grad_y_g", "grad_x_g", "grad_g", "hvp", "jvp", "hvp_jvp", "linearize",
           "f_value", "g_value")


class WakeOracles(Oracles):
    """Oracles that record, at every call, the counted calls made before it and whether the x it is given has x_T != 0."""

    def __init__(self, problem):
        super().__init__(problem)
        self.total = 0
        self.log: list[tuple[int, bool]] = []

    def _count(self, name: str, k: int = 1) -> None:
        super()._count(name, k)
        self.total += k


def _logged(name: str) -> Callable:
    base = getattr(Oracles, name)

    def method(self, x, *args, **kw):
        self.log.append((self.total, bool(torch.as_tensor(x).detach()[-1] != 0)))
        return base(self, x, *args, **kw)

    method.__name__ = name
    return method


for _n in _LOGGED:
    setattr(WakeOracles, _n, _logged(_n))


class _CheatNCSC(harness.Estimator):
    """Negative control (not registered): returns grad H(x) from the problem, with no counted oracle call."""

    name = "cheat"

    def estimate(self, oracles, x, noise, state=None):
        return harness.Estimate(oracles.problem.hypergradient(x))


@harness.register_claim("ji-ncsc-zero-chain")
class NCSCZeroChain(Claim):
    citation = CITE
    statement = ("On Ji's NC-SC instance ji-ncsc (T = 4, mu = 0.005 so n = 7, L_g = L_f = lam = 1), every registered "
                 "zero-respecting method run from x = 0, y = 0 (AID-CG, AID-FP, AID-NS, ITD, AccBiO and Algorithm 1, F2BA, "
                 "F2BA+, AccF2BA+, F2SA, BOME, HOAG) passes x with x_T != 0 to no oracle call before T n = 28 counted calls; and at least "
                 "one of them does reach x_T != 0 within its run (the count is exact, and not vacuous).")
    control = "a method that reads grad H from the problem object (uncounted): x_T wakes after T outer steps and 0 counted calls"
    METHODS = (("aid-cg", {"inner_steps": 10, "solver_steps": 5}), ("aid-fp", {"inner_steps": 10, "solver_steps": 5}),
               ("aid-neumann", {"inner_steps": 10, "solver_steps": 5}), ("itd", {"inner_steps": 10}), ("accbio", {}),
               ("accbio-alg1", {}), ("f2ba", {}), ("f2ba-plus", {}), ("accf2ba-plus", {"outer_lr": 0.5}), ("f2sa", {}),
               ("bome", {}), ("hoag", {}))

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("ji-ncsc", T=4, mu=0.005)
        bound = p.zero_chain_calls()
        steps = 25 if size == "ci" else 400
        methods = [("cheat", None)] if control else [(n, kw) for n, kw in self.METHODS if n in harness.estimators()]
        rows: dict[str, Any] = {}
        ok = True
        for name, kw in methods:
            est = _CheatNCSC() if control else harness.estimator(name, **kw)
            o = WakeOracles(p)
            tr = outer_loop(p, est, steps, 0.5 if name != "bome" else 0.05, oracles=o)
            woke = [k for k, awake in o.log if awake]
            final_awake = bool(tr.x_final[-1] != 0)
            first = woke[0] if woke else (o.total if final_awake else None)
            early = first is not None and first < bound
            ok &= not early
            rows[name] = {"calls": o.total, "first_call_with_xT_awake": first, "x_T_final_nonzero": final_awake}
        ok = ok and any(r["first_call_with_xT_awake"] is not None for r in rows.values())
        return Verdict(ok, "first counted call with x_T != 0: " + ", ".join(
            f"{k} {v['first_call_with_xT_awake']}" for k, v in rows.items()) + f" (None: x_T stayed 0 in {steps} steps)",
            f">= T n = {bound} for every method, and reached by at least one", {"runs": rows, "T": p.T, "n": p.n})


def _patch_chain_shortcut() -> contextlib.AbstractContextManager:
    """A shortcut in g: x_T coupled (weakly) to y^(0)_n, the first coordinate to wake, so the chain has length 1."""
    from blobench.problems.ji_ncsc import JiNCSC

    orig = JiNCSC.inner

    def leaky(self, x, y, batch=None):
        return orig(self, x, y, batch) - 1e-3 * x[-1] * y[self.n - 1]

    return mock.patch.object(JiNCSC, "inner", leaky)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], contextlib.AbstractContextManager]]] = [
    ("ncsc-chain-shortcut", ("ji-ncsc-zero-chain",), _patch_chain_shortcut),
]
