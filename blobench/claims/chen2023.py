"""Claim of F2BA.

Source: Chen, Ma, Zhang, "Near-Optimal Nonconvex-Strongly-Convex Bilevel Optimization with Fully First-Order
Oracles", arXiv 2306.14853: Lemma 4.1, ||grad L*_lambda(x) - grad Phi(x)|| = O(kappa^3 / lambda).

``MUTATIONS`` lists in-process breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch

from blobench import harness
from blobench.claims._common import _patch, _setattr, fit_power
from blobench.estimators.value_function import F2BA
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.sampling import estimate


def _logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


@harness.register_claim("f2ba-penalty-bias")
class F2BAPenaltyBias(Claim):
    citation = "Chen, Ma, Zhang 2023 (arXiv 2306.14853), Lemma 4.1 / Algorithm 1 (F2BA)"
    statement = ("F2BA's direction at converged inner loops is grad L*_lambda, O(1/lambda) from grad Phi: on logreg-l2 (not a "
                 "quadratic), the exponent of ||D_x - grad Phi|| against lambda in [10, 1000] (95% t-interval) is -1; the rule: "
                 "the interval meets [-1.1, -0.9] and lies below -0.5.")
    control = "the penalty's x-term lambda (grad_x g(x, z) - grad_x g(x, y)) dropped (D_x = grad_x f(x, z))"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _logreg()
        lams = [10.0, 30.0, 100.0, 300.0, 1000.0]
        K = 400 if size == "ci" else 1500
        x = p.x0()
        truth = p.hypergradient(x)
        errs = []
        with _setattr(F2BA, "use_penalty_term", False) if control else contextlib.nullcontext():
            for lam in lams:
                g = estimate(p, harness.estimator("f2ba", penalty=lam, inner_steps=K, inner_solver="agd"), x, n=1).grads[0]
                errs.append(float(torch.linalg.norm(g - truth)))
        a, lo, hi = fit_power(lams, errs)
        ok = bool(np.isfinite(a)) and lo <= -0.9 and hi >= -1.1 and hi < -0.5
        return Verdict(ok, f"exponent {a:.3f} [{lo:.3f}, {hi:.3f}]", "-1 (interval meets [-1.1, -0.9], below -0.5)",
                       {"lambda": lams, "errors": errs, "exponent": a, "interval": [lo, hi], "inner_steps": K,
                        "lambda_times_error": [l * e for l, e in zip(lams, errs)]})


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("f2ba-penalty-term-dropped", ("f2ba-penalty-bias",), _patch(F2BA, "use_penalty_term", False)),
]
