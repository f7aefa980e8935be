"""Claims of the zeroth-order (Gaussian smoothing, ES) hypergradient.

Source: Nesterov & Spokoiny, "Random gradient-free minimization of convex functions", FoCM 2017: Gaussian
smoothing Phi_mu(x) = E Phi(x + mu u), u ~ N(0, I), whose gradient is the mean of the central difference
quotient (Phi(x + mu u) - Phi(x - mu u)) / (2 mu) u (their eqs. (21) and (27)), and ||grad Phi_mu - grad Phi||
= O(mu^2) for a Hessian-Lipschitz Phi (their Lemma 3); the variance of the difference quotient of noisy values,
d sigma^2 / (2 Q mu^2) for a central pair with independent noise (Ghadimi & Lan 2013 for zeroth-order SGD with
noisy values).

Issue 28: the bias claim measures E g_mu - grad Phi itself (with its interval, against the exact grad Phi_mu on
flat-tail) and checks E[u u^T] = I instead of assuming it; the variance claim sweeps Q and decides on the constant
d Var[f] / 2. ``MUTATIONS`` lists realistic one-line breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable, ContextManager

import numpy as np
import torch

from blobench import harness
from blobench.claims._common import (
    _patch,
    _setattr,
    fit_power,
)
from blobench.estimators.zeroth_order import ES, ZerothOrderBase
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.gate.mutations import source_patch
from blobench.measure.sampling import draw_noise, estimate

#: flat-tail: Phi(x) = sum_i h(x_i / lambda_i) is smooth, nonconvex, with a nonzero third derivative at x0 = lambda
#: (t = 1), so the smoothing bias is a true mu^2 term; and it is a sum of one-variable terms, so grad Phi_mu is exact
_FLAT = {"dim": 2, "kappa": 2.0, "tail": 0.5}


def smoothed_gradient(p, x: torch.Tensor, mu: float, nodes: int = 80) -> torch.Tensor:
    """grad Phi_mu(x) = E_u grad Phi(x + mu u), u ~ N(0, I) (Nesterov & Spokoiny 2017, eq. (21)), for a problem whose
    Phi is a sum of one-variable terms (d_i Phi depends on x_i only, as flat-tail's): the d-dimensional Gaussian
    expectation is then a one-dimensional Gauss-Hermite sum over the shift x + mu t 1, exact to rounding for
    ``nodes`` = 80 on a smooth Phi."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    ones = torch.ones_like(x)
    return sum(float(wk) * p.hypergradient(x + mu * float(tk) * ones) for tk, wk in zip(t, w))


def direction_moment(p, e, draws: int, seed: int) -> tuple[float, float]:
    """(max |S - I|, its 4-sigma tolerance 4 sqrt(2 / N)): S = (1/N) sum u u^T over the N = draws * Q directions
    that the estimator's own ``draw`` gives. E[u u^T] = I is what makes E[<grad Phi, u> u] = grad Phi, i.e. what
    makes the smoothing estimate a gradient estimate at all; the claims check it rather than assume it."""
    u = e.draw(p, torch.Generator().manual_seed(seed), draws)["dir/u"].reshape(-1, p.dim_x)
    S = u.T @ u / u.shape[0]
    return float((S - torch.eye(p.dim_x, dtype=S.dtype)).abs().max()), 4.0 * math.sqrt(2.0 / u.shape[0])


@harness.register_claim("zo-smoothing-bias")
class ZOSmoothingBias(Claim):
    citation = ("Nesterov & Spokoiny 2017 (FoCM), Gaussian smoothing: E g_mu = grad Phi_mu (eq. (21), central scheme (27)) "
                "and ||grad Phi_mu - grad Phi|| = O(mu^2) for a Hessian-Lipschitz Phi (Lemma 3); estimator 'es'")
    statement = ("On flat-tail (nonconvex, closed-form grad Phi_mu), the ES estimate with Q = 4 directions has mean "
                 "E g_mu = grad Phi_mu, so its bias E g_mu - grad Phi is the smoothing bias, O(mu^2). Rule: (a) the "
                 "estimator's own directions have E[u u^T] = I (max |S - I| within 4 sigma over 10^6 draws); (b) at each mu "
                 "in [0.05, 0.4] the bias measured with the control variate <grad Phi, u> u (its mean is grad Phi by (a)) "
                 "agrees with the exact grad Phi_mu - grad Phi, every coordinate within 4 standard errors; (c) the fitted "
                 "exponent of the measured ||bias|| against mu has its 95% interval within [1.5, 2.5].")
    control = "difference quotient scaled by 1/mu instead of 1/(2 mu) (the wrong scale)"
    Q = 4

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("flat-tail", **_FLAT)
        x = p.x0()
        truth = p.hypergradient(x)
        mus = [0.05, 0.1, 0.2, 0.4]
        n = 500 if size == "ci" else 5000
        ctx = _setattr(ES, "central_scale", False) if control else contextlib.nullcontext()
        meas, exact, z = [], [], []
        with ctx:
            for mu in mus:
                e = harness.estimator("es", directions=self.Q, radius=mu, inner_steps=40)
                g = estimate(p, e, x, seed=0, n=n).grads
                u = draw_noise(p, e, n, 0)["dir/u"]  # [n, Q, d]
                r = (g - ((u @ truth).unsqueeze(-1) * u).mean(1)).numpy()  # g_mu minus the control variate
                b, se = r.mean(0), r.std(0, ddof=1) / math.sqrt(n)
                ex = (smoothed_gradient(p, x, mu) - truth).numpy()
                meas.append(b)
                exact.append(ex)
                z.append(float(np.max(np.abs(b - ex) / np.maximum(se, 1e-300))))
            moment, tol = direction_moment(p, e, 250000, 99)
        bias = np.linalg.norm(meas, axis=1)
        a, lo, hi = fit_power(mus, bias)
        a_exact = fit_power(mus, np.linalg.norm(exact, axis=1))[0]
        ok = moment <= tol and max(z) <= 4.0 and 1.5 <= lo and hi <= 2.5
        return Verdict(ok, f"(a) max|S - I| {moment:.2g} (tol {tol:.2g}); (b) max z {max(z):.2f}; "
                           f"(c) bias exponent {a:.2f} [{lo:.2f}, {hi:.2f}]",
                       f"(a) <= tol; (b) max z <= 4; (c) 2, interval within [1.5, 2.5] (exact smoothing: {a_exact:.2f})",
                       {"mu": mus, "bias_norm": bias.tolist(), "exact_bias_norm": np.linalg.norm(exact, axis=1).tolist(),
                        "max_z": z, "exponent": a, "interval": [lo, hi], "exact_exponent": a_exact,
                        "direction_moment": moment, "moment_tol": tol, "draws": n, "directions": self.Q})


def _quadratic_noisy():
    return harness.problem("quadratic", dim=5, kappa=4, noise=0.3)


@functools.lru_cache(maxsize=None)
def _value_variance_constant() -> float:
    """d Var[f(x0, y*; xi)] / 2 on the stochastic quadratic (one sample per value, 4000 samples): the constant of
    the 1/mu^2 variance term of a central pair with independent value noise (Q = 1)."""
    p = _quadratic_noisy()
    x = p.x0()
    ys = p.inner_solution(x)
    b = p.sample(torch.Generator().manual_seed(5), 4000)
    fv = torch.stack([p.outer(x, ys, {k: v[i] for k, v in b.items()}) for i in range(4000)])
    return p.dim_x * float(fv.var()) / 2


memo(_value_variance_constant)


@harness.register_claim("zo-smoothing-variance")
class ZOSmoothingVariance(Claim):
    citation = ("Nesterov & Spokoiny 2017; Ghadimi & Lan 2013 (zeroth-order SGD with noisy values): a central pair of "
                "values with independent noise of variance sigma^2 has tr Var = d sigma^2 / (2 Q mu^2) + O(1)")
    statement = ("With independent minibatch noise in the two values of a pair, the ES estimate's total variance on the "
                 "stochastic quadratic is d Var[f] / (2 Q mu^2) as mu -> 0. Rule, for Q = 1 and Q = 4: the exponent of "
                 "tr Var against mu in [0.01, 0.08] (bootstrap 95% interval) lies within [-2.3, -1.7], and at mu = 0.01 "
                 "Q mu^2 tr Var / (d Var[f] / 2) lies within [0.75, 1.33].")
    control = "common random numbers (both values of a pair use the same minibatch): the 1/mu^2 term cancels"
    QS = (1, 4)

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _quadratic_noisy()
        x = p.x0()
        mus = [0.01, 0.02, 0.04, 0.08]
        n = 500 if size == "ci" else 5000
        pred = _value_variance_constant()
        rng = np.random.default_rng(0)
        rows, ok = {}, True
        for Q in self.QS:
            Gs = [estimate(p, harness.estimator("es", directions=Q, radius=mu, inner_steps=20, common_batches=control),
                           x, seed=1, n=n).grads.numpy() for mu in mus]
            var = [float(G.var(0, ddof=1).sum()) for G in Gs]
            a = fit_power(mus, var)[0]
            boots = [fit_power(mus, [float(G[rng.integers(0, n, n)].var(0, ddof=1).sum()) for G in Gs])[0]
                     for _ in range(200)]
            lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
            ratio = Q * mus[0] ** 2 * var[0] / pred
            ok = ok and -2.3 <= lo and hi <= -1.7 and 0.75 <= ratio <= 1.33
            rows[Q] = {"trace_var": var, "exponent": a, "interval": [lo, hi], "constant_ratio": ratio}
        measured = "; ".join(f"Q={Q}: exponent {r['exponent']:.2f} [{r['interval'][0]:.2f}, {r['interval'][1]:.2f}], "
                             f"Q mu^2 tr Var / (d Var[f]/2) = {r['constant_ratio']:.3g}" for Q, r in rows.items())
        return Verdict(ok, measured, f"-2 (interval within [-2.3, -1.7]); ratio 1 (within [0.75, 1.33]); "
                                     f"d Var[f]/2 = {pred:.3g}",
                       {"mu": mus, "draws": n, "predicted_constant": pred, **{f"Q={Q}": r for Q, r in rows.items()}})


# -- mutation suite -------------------------------------------------------------------------------------------
_DIRECTIONS = 'return torch.randn((n, self.p["directions"], problem.dim_x), generator=generator, dtype=problem.dtype)'

MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("es-wrong-scale", ("zo-smoothing-bias",), _patch(ES, "central_scale", False)),
    # E g = Q grad Phi_mu: invisible at Q = 1, where a sum is a mean
    ("es-sum-over-directions", ("zo-smoothing-bias", "zo-smoothing-variance"),
     source_patch(ES, "estimate", ("(coef.unsqueeze(1) * u).mean(0)", "(coef.unsqueeze(1) * u).sum(0)"))),
    # forward differences (Phi(x + mu u) - Phi(x)) / mu: the same mean grad Phi_mu (zo-smoothing-bias rightly holds),
    # four times the noise term 2 d sigma^2 / (Q mu^2)
    ("es-forward-difference", ("zo-smoothing-variance",),
     source_patch(ES, "estimate", ("xs = torch.cat([x + mu * u, x - mu * u])", "xs = torch.cat([x + mu * u, x.expand_as(u)])"),
                  ("scale = 2 * mu if self.central_scale else mu", "scale = mu"))),
    # directions drawn 10% too wide: E[u u^T] = 1.21 I (the control variate <grad Phi, u> u would hide it)
    ("zo-directions-x1.1", ("zo-smoothing-bias",),
     source_patch(ZerothOrderBase, "directions", ("return torch.randn(", "return 1.1 * torch.randn("))),
    # directions normalised to the unit sphere without the factor d: E[u u^T] = I / d
    ("zo-directions-unit-sphere", ("zo-smoothing-bias",),
     source_patch(ZerothOrderBase, "directions", (_DIRECTIONS, "u = " + _DIRECTIONS[7:] + "; return u / u.norm(dim=-1, keepdim=True)"))),
]
