"""Claims of the zeroth-order (Gaussian smoothing, ES) hypergradient.

Source: Nesterov & Spokoiny, "Random gradient-free minimization of convex functions", FoCM 2017: Gaussian
smoothing, ||grad Phi_mu - grad Phi|| = O(mu^2) for the central scheme on a smooth Phi (their Lemma 3
for the Hessian-Lipschitz case), and the variance of the difference quotient of noisy values, O(d / mu^2)
(Ghadimi & Lan 2013 for zeroth-order SGD with noisy values).

``MUTATIONS`` lists in-process breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch

from blobench import harness
from blobench.claims._common import (
    _patch,
    _setattr,
    fit_power,
)
from blobench.estimators.zeroth_order import ES
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.sampling import draw_noise, estimate


def _directional_truth(p, e, x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """<grad Phi, u> u averaged over each draw's Q directions: what a zero-bias smoothing estimate would give per draw."""
    u = draw_noise(p, e, n, seed)["dir/u"]  # [n, Q, d]
    g = p.hypergradient(x)
    return ((u @ g).unsqueeze(-1) * u).mean(1)


@harness.register_claim("zo-smoothing-bias")
class ZOSmoothingBias(Claim):
    citation = "Nesterov & Spokoiny 2017 (Gaussian smoothing, central scheme), as used by ES hypergradients; estimator 'es'"
    statement = ("The ES hypergradient's bias ||E g_mu - grad Phi|| is O(mu^2) on logreg-l2 (exact inner solves): the "
                 "exponent against mu in [0.02, 0.16] (bootstrap 95% interval over draws) lies within [1.5, 2.5]. The bias is "
                 "measured per draw against <grad Phi, u> u with the same directions u, which has the same mean as grad Phi.")
    control = "difference quotient scaled by 1/mu instead of 1/(2 mu) (the wrong scale)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)
        x = p.x0()
        mus = [0.02, 0.04, 0.08, 0.16]
        n, seed = (200, 0) if size == "ci" else (3000, 0)
        diffs = []
        ctx = _setattr(ES, "central_scale", False) if control else contextlib.nullcontext()
        with ctx:
            for mu in mus:
                e = harness.estimator("es", directions=1, radius=mu, inner_steps=150)
                g = estimate(p, e, x, seed=seed, n=n).grads
                diffs.append((g - _directional_truth(p, e, x, n, seed)).numpy())
        D = np.stack(diffs)  # [mu, n, d]
        bias = np.linalg.norm(D.mean(1), axis=1)
        a = fit_power(mus, bias)[0]
        rng = np.random.default_rng(0)
        boots = []
        for _ in range(300):
            idx = rng.integers(0, n, n)
            boots.append(fit_power(mus, np.linalg.norm(D[:, idx].mean(1), axis=1))[0])
        lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
        ok = 1.5 <= lo and hi <= 2.5
        return Verdict(ok, f"bias exponent {a:.2f} [{lo:.2f}, {hi:.2f}]", "2 (interval within [1.5, 2.5])",
                       {"mu": mus, "bias_norm": bias.tolist(), "exponent": a, "interval": [lo, hi], "draws": n})


@harness.register_claim("zo-smoothing-variance")
class ZOSmoothingVariance(Claim):
    citation = "Nesterov & Spokoiny 2017; Ghadimi & Lan 2013 (zeroth-order SGD with noisy values): Var ~ d sigma^2 / mu^2"
    statement = ("With independent minibatch noise in the two function values of a pair, the ES estimate's total variance "
                 "grows like mu^-2 as mu -> 0 on the stochastic quadratic: the exponent against mu in [0.01, 0.08] "
                 "(bootstrap 95% interval) lies within [-2.3, -1.7]; tightness: mu^2 tr Var vs d Var[f_xi]/2 at the smallest mu.")
    control = "common random numbers (both values of a pair use the same minibatch): the 1/mu^2 term cancels"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("quadratic", dim=5, kappa=4, noise=0.3)
        x = p.x0()
        mus = [0.01, 0.02, 0.04, 0.08]
        n = 1000 if size == "ci" else 10000
        var = []
        Gs = []
        for mu in mus:
            e = harness.estimator("es", directions=1, radius=mu, inner_steps=60, common_batches=control)
            G = estimate(p, e, x, seed=1, n=n).grads.numpy()
            Gs.append(G)
            var.append(float(G.var(0, ddof=1).sum()))
        a = fit_power(mus, var)[0]
        rng = np.random.default_rng(0)
        boots = []
        for _ in range(300):
            boots.append(fit_power(mus, [float(G[rng.integers(0, n, n)].var(0, ddof=1).sum()) for G in Gs])[0])
        lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
        # predicted constant: d Var[f(x, y*; xi)] / 2 (Q = 1, pair difference of two independent values over 2 mu)
        ys = p.inner_solution(x)
        b = p.sample(torch.Generator().manual_seed(5), 20000)
        fv = torch.stack([p.outer(x, ys, {k: v[i] for k, v in b.items()}) for i in range(2000)])
        pred_const = p.dim_x * float(fv.var()) / 2
        ok = -2.3 <= lo and hi <= -1.7
        return Verdict(ok, f"variance exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; mu^2 tr Var = {mus[0] ** 2 * var[0]:.3g}",
                       f"-2 (interval within [-2.3, -1.7]); d Var[f]/2 = {pred_const:.3g}",
                       {"mu": mus, "trace_var": var, "exponent": a, "interval": [lo, hi], "predicted_constant": pred_const})


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("es-wrong-scale", ("zo-smoothing-bias",), _patch(ES, "central_scale", False)),
]
