"""Claim of PZOBO.

Source: Sow, Ji, Liang, "On the Convergence Theory for Hessian-Free Bilevel Algorithms", NeurIPS 2022
(arXiv 2110.07004): Algorithm 1 (PZOBO) and its Jacobian estimate delta = (y_K(x + mu u) - y_K(x)) / mu,
whose error against the exact Jacobian-vector product J_K u is O(mu) (their Lemma on the estimator's bias,
smooth y_K: delta - J_K u = (mu / 2) d^2 y_K [u, u] + O(mu^2)).

Issue 28: the claim sweeps the number of directions Q (1 and 4); at Q = 1 a sum over directions equals their mean
and consecutive differences equal differences against the base point, so neither bug could be seen.
``MUTATIONS`` lists realistic one-line breakages of the estimator with the claims that must catch them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch
from torch.func import grad, jvp, vmap

import blobench.estimators.zeroth_order as zo
from blobench import harness
from blobench.claims._common import _patch, fit_power
from blobench.estimators.zeroth_order import PZOBO
from blobench.gate.claim_base import Claim, Verdict
from blobench.gate.mutations import source_patch
from blobench.measure.sampling import draw_noise, estimate

_solve_at_points = zo.solve_at_points


def _logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


def _jacobian_products(p, x: torch.Tensor, u: torch.Tensor, K: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_K(x), J_K u) for each row u of ``u``: exact forward-mode derivative of K steps of gradient descent on g from
    init_inner(x), in float64 (the truth the finite difference estimates)."""
    gy = grad(p.inner, argnums=1)

    def yK(x_):
        y = p.init_inner(x_)
        for _ in range(K):
            y = y - lr * gy(x_, y, None)
        return y

    ys, jus = vmap(lambda v: jvp(yK, (x,), (v,)))(u)
    return ys[0], jus


@harness.register_claim("pzobo-jacobian-bias")
class PZOBOJacobianBias(Claim):
    citation = "Sow, Ji, Liang 2022 (arXiv 2110.07004), Algorithm 1 (PZOBO) and its Jacobian-estimate error bound"
    statement = ("PZOBO's Hessian-free estimate differs from the same draw's exact-Jacobian estimate "
                 "grad_x f + (1/Q) sum_q <J_K u_q, grad_y f> u_q by O(mu): on logreg-l2 (y_K not affine in x), for Q = 1 "
                 "and Q = 4 directions, the mean over draws of that distance against mu in [0.005, 0.08] has fitted "
                 "exponent 1 (95% t-interval meets [0.9, 1.1] and lies within [0.5, 1.5]). Q = 4 is what separates the "
                 "mean over directions from a sum, and differences against the base point y_K(x) from consecutive ones.")
    control = "the perturbed inner trajectories started from another y_0 than the base one (common start dropped)"
    QS = (1, 4)

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _logreg()
        x = p.x0()
        # K = 5: few enough steps that y_K still depends on y_0 (the control's shifted starts survive the contraction)
        K, n = (5, 40) if size == "ci" else (5, 400)
        mus = [0.005, 0.01, 0.02, 0.04, 0.08]
        rows, ok = {}, True
        with _patch(zo, "solve_at_points", _offset_starts)() if control else contextlib.nullcontext():
            for Q in self.QS:
                errs = []
                for mu in mus:
                    e = harness.estimator("pzobo", directions=Q, radius=mu, inner_steps=K, warm_start=False)
                    g = estimate(p, e, x, seed=0, n=n).grads
                    u = draw_noise(p, e, n, 0)["dir/u"]  # [n, Q, d]
                    y, ju = _jacobian_products(p, x, u.reshape(-1, p.dim_x), K, e.inner_lr(p))
                    gx, gyf = grad(p.outer, argnums=(0, 1))(x, y, None)
                    exact = gx + ((ju.reshape(n, Q, -1) @ gyf).unsqueeze(-1) * u).mean(1)
                    errs.append(float(torch.linalg.norm(g - exact, dim=1).mean()))
                a, lo, hi = fit_power(mus, errs)
                ok = ok and bool(np.isfinite(a)) and lo <= 1.1 and hi >= 0.9 and lo >= 0.5 and hi <= 1.5
                rows[Q] = {"mean_error": errs, "exponent": a, "interval": [lo, hi]}
        return Verdict(ok, "; ".join(f"Q={Q}: exponent {r['exponent']:.3f} [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]"
                                     for Q, r in rows.items()),
                       "1 for each Q (interval meets [0.9, 1.1], within [0.5, 1.5])",
                       {"mu": mus, "inner_steps": K, "draws": n, **{f"Q={Q}": r for Q, r in rows.items()}})


def _offset_starts(oracles, xs: torch.Tensor, y0: torch.Tensor, steps: int, lr: float, batch) -> torch.Tensor:
    """solve_at_points with every point but the first started 1e-3 cos(i) away from the first's y_0 (the negative
    control). Not a constant shift: logreg-l2's softmax is invariant to adding one constant to every class score, so
    grad_y f is orthogonal to the all-ones direction and a constant shift would go unseen."""
    ys0 = y0.unsqueeze(0).expand(xs.shape[0], -1) if y0.dim() == 1 else y0
    shift = torch.zeros_like(ys0)
    shift[1:] = 1e-3 * torch.cos(torch.arange(ys0.shape[1], dtype=ys0.dtype))
    return _solve_at_points(oracles, xs, ys0 + shift, steps, lr, batch)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("pzobo-common-start-dropped", ("pzobo-jacobian-bias",), _patch(zo, "solve_at_points", _offset_starts)),
    # sum instead of mean over the Q directions (invisible at Q = 1)
    ("pzobo-sum-over-directions", ("pzobo-jacobian-bias",),
     source_patch(PZOBO, "estimate", ("((delta @ gy).unsqueeze(1) * u).mean(0)", "((delta @ gy).unsqueeze(1) * u).sum(0)"))),
    # consecutive differences y_K(x + mu u_q) - y_K(x + mu u_{q-1}) instead of differences against the base point
    ("pzobo-consecutive-differences", ("pzobo-jacobian-bias",),
     source_patch(PZOBO, "estimate", ("delta = (ys[1:] - y) / mu", "delta = (ys[1:] - ys[:-1]) / mu"))),
]
