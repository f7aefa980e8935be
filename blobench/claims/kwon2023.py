"""Claim of F2SA.

Source: Kwon, Kwon, Wright, Nowak, "A Fully First-Order Method for Stochastic Bilevel Optimization", ICML 2023
(arXiv 2301.10945): Lemma 3.1, ||grad L*_lambda - grad Phi|| = O(1/lambda).

``MUTATIONS`` lists in-process breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager

import numpy as np
import torch
from scipy import stats

from blobench import harness
from blobench.claims._common import (
    _patch,
    _setattr,
)
from blobench.estimators.first_order import F2SA
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.sampling import estimate


@harness.register_claim("f2sa-penalty-bias")
class F2SAPenaltyBias(Claim):
    citation = "Kwon, Kwon, Wright, Nowak 2023 (arXiv 2301.10945), Lemma 3.1 / Algorithm 1 (F2SA)"
    statement = ("F2SA's direction at converged y, z is grad L*_lambda, whose distance to grad Phi is O(1/lambda): on a "
                 "quadratic, the exponent of ||D_x - grad Phi|| against lambda in [10, 1000] (per-x intercepts, 95% interval) "
                 "is -1; the rule: the interval meets [-1.1, -0.9].")
    control = "grad_y f dropped from the y-steps (then y = z and the penalty's correction vanishes)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("quadratic", dim=10 if size == "ci" else 30, kappa=4)
        lams = [10.0, 30.0, 100.0, 300.0, 1000.0]
        nx = 2 if size == "ci" else 8
        T = 100 if size == "ci" else 400  # y, z contract at <= 1 - mu/L = 0.75 per step: 0.75^100 ~ 3e-13 << 1/lambda^2
        gen = torch.Generator().manual_seed(11)
        rows = []
        ctx = _setattr(F2SA, "use_outer_in_y", False) if control else contextlib.nullcontext()
        with ctx:
            for k in range(nx):
                x = torch.randn(p.dim_x, generator=gen, dtype=torch.float64)
                truth = p.hypergradient(x)
                for lam in lams:
                    g = estimate(p, harness.estimator("f2sa", penalty=lam, inner_steps=T), x, n=1).grads[0]
                    rows.append((k, lam, float(torch.linalg.norm(g - truth))))
        # log err = a log lambda + c_k (one intercept per x): least squares with a t-interval on a
        ks = np.array([r[0] for r in rows])
        X = np.column_stack([np.log([r[1] for r in rows])] + [(ks == k).astype(float) for k in range(nx)])
        y = np.log([max(r[2], 1e-300) for r in rows])
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        df = len(y) - X.shape[1]
        s2 = float(resid @ resid) / df
        se = math.sqrt(s2 * np.linalg.inv(X.T @ X)[0, 0])
        a = float(beta[0])
        half = float(stats.t.ppf(0.975, df)) * se
        lo, hi = a - half, a + half
        ok = lo <= -0.9 and hi >= -1.1
        lam_bias = [r[1] * r[2] for r in rows if r[1] == lams[-1]]
        return Verdict(ok, f"exponent {a:.3f} [{lo:.3f}, {hi:.3f}]", "-1 (interval meets [-1.1, -0.9])",
                       {"lambda": lams, "errors": [r[2] for r in rows], "x_index": ks.tolist(), "exponent": a,
                        "interval": [lo, hi], "lambda_times_error_at_1000": lam_bias})


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("f2sa-grad-y-f-dropped", ("f2sa-penalty-bias",), _patch(F2SA, "use_outer_in_y", False)),
]
