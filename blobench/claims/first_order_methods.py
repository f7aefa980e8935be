"""Claims of the value-function / fully first-order (BOME, F2BA) and Hessian-free (PZOBO) methods (issue 15).

Sources:
- Chen, Ma, Zhang, "Near-Optimal Nonconvex-Strongly-Convex Bilevel Optimization with Fully First-Order
  Oracles", arXiv 2306.14853: Lemma 4.1, ||grad L*_lambda(x) - grad Phi(x)|| = O(kappa^3 / lambda).
- Liu, Ye, Wright, Stone, Liu, "BOME! Bilevel Optimization Made Easy", NeurIPS 2022 (arXiv 2209.08709):
  Algorithm 1 and its convergence analysis (Theorem 3: the stationarity measure is bounded by terms that
  vanish as the step xi -> 0, the iterations K -> infinity and the inner steps T -> infinity).
- Sow, Ji, Liang, "On the Convergence Theory for Hessian-Free Bilevel Algorithms", NeurIPS 2022
  (arXiv 2110.07004): Algorithm 1 (PZOBO) and its Jacobian estimate delta = (y_K(x + mu u) - y_K(x)) / mu,
  whose error against the exact Jacobian-vector product J_K u is O(mu) (their Lemma on the estimator's bias,
  smooth y_K: delta - J_K u = (mu / 2) d^2 y_K [u, u] + O(mu^2)).

``MUTATIONS`` lists in-process breakages of the estimators with the claims that must catch them, as
blobench/claims/solvers.py does.
"""
from __future__ import annotations

from typing import Callable, ContextManager

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from blobench import harness
import blobench.estimators.zeroth_order as zo
from blobench.claims.solvers import _patch, _setattr, fit_power
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.outer import outer_loop
from blobench.measure.sampling import draw_noise, estimate

from blobench.estimators.value_function import BOME, F2BA

_solve_at_points = zo.solve_at_points


def _logreg():
    return harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)


# -- F2BA -----------------------------------------------------------------------------------------------------
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
        with _setattr(F2BA, "use_penalty_term", False) if control else _nullcontext():
            for lam in lams:
                g = estimate(p, harness.estimator("f2ba", penalty=lam, inner_steps=K, inner_solver="agd"), x, n=1).grads[0]
                errs.append(float(torch.linalg.norm(g - truth)))
        a, lo, hi = fit_power(lams, errs)
        ok = bool(np.isfinite(a)) and lo <= -0.9 and hi >= -1.1 and hi < -0.5
        return Verdict(ok, f"exponent {a:.3f} [{lo:.3f}, {hi:.3f}]", "-1 (interval meets [-1.1, -0.9], below -0.5)",
                       {"lambda": lams, "errors": errs, "exponent": a, "interval": [lo, hi], "inner_steps": K,
                        "lambda_times_error": [l * e for l, e in zip(lams, errs)]})


# -- BOME -----------------------------------------------------------------------------------------------------
def _limit_distance(tr, tail: int) -> float:
    """The largest distance to the stationary point over the last ``tail`` recorded iterates (the constant-step limit cycle)."""
    if tr.diverged:
        return float("inf")
    return float(max(tr.dist[-tail:]))


@harness.register_claim("bome-step-neighbourhood")
class BOMEStepNeighbourhood(Claim):
    citation = "Liu, Ye, Wright, Stone, Liu 2022 (arXiv 2209.08709), Algorithm 1 and Theorem 3 (BOME)"
    statement = ("With a constant step xi on v = (x, y) (outer_lr = joint_lr = xi) and T inner steps, BOME's iterates settle in "
                 "a neighbourhood of the stationary point that shrinks with xi: on a quadratic, the limit distance "
                 "max_{last 10} ||x_t - x*|| against xi in [0.025, 0.1] has fitted exponent with 95% interval above 0.5 "
                 "(measured about 1: an O(xi) neighbourhood), and at xi = 0.025 it is below 0.03.")
    control = "the dynamic barrier off (lambda = 0: plain descent on f in (x, y), which ignores the constraint)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("quadratic", dim=5 if size == "ci" else 20, kappa=4, rho=1.0)
        xis = [0.1, 0.05, 0.025]
        T = 15 if size == "ci" else 40
        dists = []
        with _setattr(BOME, "use_barrier", False) if control else _nullcontext():
            for xi in xis:
                steps = int(round((40 if size == "ci" else 120) / xi))
                e = harness.estimator("bome", inner_steps=T, joint_lr=xi)
                tr = outer_loop(p, e, steps, xi, eval_every=1 if size == "ci" else 1)
                dists.append(_limit_distance(tr, 10))
        a, lo, hi = fit_power(xis, dists)
        ok = bool(np.isfinite(a)) and lo > 0.5 and dists[-1] < 0.03
        return Verdict(ok, f"exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; limit distance at xi = {xis[-1]}: {dists[-1]:.3g}",
                       "> 0 (interval above 0.5); distance < 0.03 at xi = 0.025",
                       {"xi": xis, "limit_distance": dists, "exponent": a, "interval": [lo, hi], "inner_steps": T})


# -- PZOBO ----------------------------------------------------------------------------------------------------
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
    statement = ("PZOBO's Hessian-free estimate differs from the same draw's exact-Jacobian estimate grad_x f + <J_K u, grad_y f> u "
                 "by O(mu): on logreg-l2 (y_K not affine in x), the mean over draws of that distance against mu in [0.005, 0.08] "
                 "has fitted exponent 1 (95% t-interval meets [0.9, 1.1] and lies within [0.5, 1.5]).")
    control = "the perturbed inner trajectories started from another y_0 than the base one (common start dropped)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _logreg()
        x = p.x0()
        # K = 5: few enough steps that y_K still depends on y_0 (the control's shifted starts survive the contraction)
        K, n = (5, 40) if size == "ci" else (5, 400)
        mus = [0.005, 0.01, 0.02, 0.04, 0.08]
        errs = []
        with _patch(zo, "solve_at_points", _offset_starts)() if control else _nullcontext():
            for mu in mus:
                e = harness.estimator("pzobo", directions=1, radius=mu, inner_steps=K, warm_start=False)
                lr = e.inner_lr(p)
                g = estimate(p, e, x, seed=0, n=n).grads
                u = draw_noise(p, e, n, 0)["dir/u"][:, 0]  # [n, d]
                y, ju = _jacobian_products(p, x, u, K, lr)
                gx, gyf = grad(p.outer, argnums=(0, 1))(x, y, None)
                exact = gx + (ju @ gyf).unsqueeze(1) * u
                errs.append(float(torch.linalg.norm(g - exact, dim=1).mean()))
        a, lo, hi = fit_power(mus, errs)
        ok = bool(np.isfinite(a)) and lo <= 1.1 and hi >= 0.9 and lo >= 0.5 and hi <= 1.5
        return Verdict(ok, f"exponent {a:.3f} [{lo:.3f}, {hi:.3f}]", "1 (interval meets [0.9, 1.1], within [0.5, 1.5])",
                       {"mu": mus, "mean_error": errs, "exponent": a, "interval": [lo, hi], "inner_steps": K, "draws": n})


def _offset_starts(oracles, xs: torch.Tensor, y0: torch.Tensor, steps: int, lr: float, batch) -> torch.Tensor:
    """solve_at_points with every point but the first started 1e-3 cos(i) away from the first's y_0 (the negative
    control). Not a constant shift: logreg-l2's softmax is invariant to adding one constant to every class score, so
    grad_y f is orthogonal to the all-ones direction and a constant shift would go unseen."""
    ys0 = y0.unsqueeze(0).expand(xs.shape[0], -1) if y0.dim() == 1 else y0
    shift = torch.zeros_like(ys0)
    shift[1:] = 1e-3 * torch.cos(torch.arange(ys0.shape[1], dtype=ys0.dtype))
    return _solve_at_points(oracles, xs, ys0 + shift, steps, lr, batch)


def _nullcontext() -> ContextManager:
    import contextlib

    return contextlib.nullcontext()


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("f2ba-penalty-term-dropped", ("f2ba-penalty-bias",), _patch(F2BA, "use_penalty_term", False)),
    ("bome-barrier-off", ("bome-step-neighbourhood",), _patch(BOME, "use_barrier", False)),
    ("bome-value-term-dropped", ("bome-step-neighbourhood",), _patch(BOME, "use_value_term", False)),
    ("pzobo-common-start-dropped", ("pzobo-jacobian-bias",), _patch(zo, "solve_at_points", _offset_starts)),
]
