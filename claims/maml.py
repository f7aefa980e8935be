"""Multi-step MAML claims (Ji, Yang, Liang, "Theoretical Convergence of Multi-Step Model-Agnostic
Meta-Learning", JMLR 2022, arXiv 2002.07836), checked on the ``meta-quadratic`` task family.

- maml-meta-gradient-growth: with nonconvex tasks the N-step meta-gradient is J_N^T grad l(w_N) with
  ||J_N|| = ||prod_j (I - alpha H)|| <= (1 + alpha L)^N (the paper's Prop. 1 / Lemma 1), so with a fixed
  alpha it grows geometrically in N, while alpha = c/(N L) keeps (1 + c/N)^N <= e^c bounded (their Thm. 1
  step-size condition alpha = O(1/(N L))).
- maml-step-size-convergence: meta gradient descent with alpha = c/(N L) converges for N up to 50 with one
  N-independent outer step beta (Thm. 1: beta and the rate do not degrade with N), while the alpha = c/L
  that converges at N = 1 diverges at large N.
- maml-convex-no-step-condition: on convex tasks (meta linear regression) ||I - alpha H|| <= 1 for any
  alpha <= 1/L, so a fixed alpha works at every N: the boundary of the nonconvex claims.

Meta-gradients: at size "ci" the problem's closed-form unrolled gradient (``exact``; equal to the ``itd``
estimator's reverse-mode MAML gradient to 1e-15, tested in tests/test_ji_problems.py); at "full" the
``itd`` estimator itself (counted HV/JV oracles) for the growth claim.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

import harness
from harness.claim_base import Claim, Verdict
from harness.outer import outer_loop
from claims.anil import single_thread

NS_CI = (1, 5, 10, 20, 30, 40, 50)
C_STEP = 0.25  # alpha = C_STEP / (N L), or fixed alpha = C_STEP / L


def _meta_grad(problem: harness.Problem, x: torch.Tensor, size: str) -> torch.Tensor:
    if size == "full":
        return harness.estimate(problem, harness.estimator("itd"), x, n=1).grads[0]
    return problem.hypergradient(x)


def growth_experiment(curvature: str, size: str) -> dict[str, Any]:
    """||grad Phi_N(x)|| over N for fixed alpha = c/L and for alpha = c/(N L); fitted per-step growth factor."""
    L = 1.0
    rows = []
    for N in NS_CI:
        fixed = harness.problem("meta-quadratic", curvature=curvature, L=L, unroll_steps=N, unroll_lr=C_STEP / L)
        scaled = harness.problem("meta-quadratic", curvature=curvature, L=L, unroll_steps=N, unroll_lr=C_STEP / (N * L))
        x = torch.ones(fixed.dim_x, dtype=torch.float64)
        gf, gs = _meta_grad(fixed, x, size), _meta_grad(scaled, x, size)
        bound = math.exp(2 * C_STEP) * max(float(torch.linalg.matrix_norm(H, 2) * torch.linalg.norm(x - c))
                                           for H, c in zip(scaled.Hs, scaled.cs))
        rows.append({"N": N, "fixed": float(torch.linalg.norm(gf)), "scaled": float(torch.linalg.norm(gs)),
                     "scaled_bound": bound, "neg_curv": fixed.constants["neg_curv"]})
    Ns = np.array([r["N"] for r in rows if r["N"] >= 10], dtype=float)
    logs = np.log([r["fixed"] for r in rows if r["N"] >= 10])
    rate = float(np.exp(np.polyfit(Ns, logs, 1)[0]))
    return {"rows": rows, "growth_factor": rate, "alpha_fixed": C_STEP / L, "L": L}


@harness.register_claim("maml-meta-gradient-growth")
class MamlMetaGradientGrowth(Claim):
    citation = "Ji, Yang, Liang, JMLR 2022 (arXiv 2002.07836), Prop. 1 and Thm. 1 (alpha = O(1/(N L)))"
    statement = ("On nonconvex (indefinite-Hessian) tasks the N-step MAML meta-gradient grows geometrically in N "
                 "with a fixed alpha, per step by a factor in [1 + alpha*lambda_-, (1 + alpha L)^2], and stays below "
                 "e^{2c} max_i ||H_i|| ||x - c_i|| for alpha = c/(N L).")
    control = "convex task Hessians (curvature='convex'): the meta-gradient does not grow, so the growth rule must fail"
    rule = ("holds iff the log-linear fit of ||grad Phi_N|| over N in {10..50} (fixed alpha = 0.25/L) gives a per-step "
            "factor rho in [1 + alpha*lambda_-, (1 + alpha L)^2] and every alpha = 0.25/(N L) meta-gradient is within the e^{2c} bound")

    def evaluate(self, size: str, control: bool) -> Verdict:
        with single_thread():
            return self._evaluate(size, control)

    def _evaluate(self, size: str, control: bool) -> Verdict:
        ev = growth_experiment("convex" if control else "indefinite", size)
        a, L = ev["alpha_fixed"], ev["L"]
        lam = ev["rows"][0]["neg_curv"]
        lo, hi = 1 + a * lam, (1 + a * L) ** 2
        bounded = all(r["scaled"] <= r["scaled_bound"] for r in ev["rows"])
        holds = (lo <= ev["growth_factor"] <= hi) and bounded and lam > 0
        sc = [r["scaled"] for r in ev["rows"]]
        return Verdict(holds, f"rho = {ev['growth_factor']:.4f}; alpha=c/(NL): max ||g|| = {max(sc):.3g} (bound {ev['rows'][0]['scaled_bound']:.3g})",
                       f"rho in [{lo:.4f}, {hi:.4f}]", ev)


def converges(problem: harness.Problem, beta: float, steps: int, estimator: str = "exact") -> dict[str, Any]:
    """Meta-GD for ``steps`` steps; converged iff not diverged and ||grad Phi||^2 fell below 1e-8 of its start."""
    tr = outer_loop(problem, harness.estimator(estimator), steps, beta, seed=0)
    g0, gmin = tr.grad_norm_sq[0], min(tr.grad_norm_sq)
    ok = (not tr.diverged) and math.isfinite(gmin) and gmin <= 1e-8 * g0
    return {"converged": bool(ok), "diverged": bool(tr.diverged), "grad_sq_0": g0, "grad_sq_min": gmin,
            "grad_sq_last": tr.grad_norm_sq[-1], "steps_run": tr.iters[-1]}


@harness.register_claim("maml-step-size-convergence")
class MamlStepSizeConvergence(Claim):
    citation = "Ji, Yang, Liang, JMLR 2022 (arXiv 2002.07836), Thm. 1 (nonconvex tasks, alpha = c/(N L), N-independent beta)"
    statement = ("On nonconvex tasks, meta gradient descent with alpha = c/(N L) and one outer step beta = 1/L converges for "
                 "every N up to 50, while the alpha = c/L that converges at N = 1 diverges at large N.")
    control = "fixed alpha = c/L at every N (the 1/N scaling removed): must not converge for all N"
    rule = "holds iff alpha = 0.25/(N L) converges (||grad Phi||^2 <= 1e-8 of start, no divergence) for all N in {1..50} and alpha = 0.25/L converges at N = 1 but not at N = 50"

    def evaluate(self, size: str, control: bool) -> Verdict:
        with single_thread():
            return self._evaluate(size, control)

    def _evaluate(self, size: str, control: bool) -> Verdict:
        steps = 400 if size == "ci" else 2000
        L = 1.0
        res = {}
        for N in NS_CI:
            a = C_STEP / L if control else C_STEP / (N * L)
            res[N] = converges(harness.problem("meta-quadratic", unroll_steps=N, unroll_lr=a, L=L), 1.0 / L, steps)
        fixed1 = converges(harness.problem("meta-quadratic", unroll_steps=1, unroll_lr=C_STEP / L, L=L), 1.0 / L, steps)
        fixed50 = converges(harness.problem("meta-quadratic", unroll_steps=50, unroll_lr=C_STEP / L, L=L), 1.0 / L, steps)
        ok_all = all(r["converged"] for r in res.values())
        holds = ok_all and fixed1["converged"] and not fixed50["converged"]
        bad = [N for N, r in res.items() if not r["converged"]]
        return Verdict(holds, f"scaled alpha converges at all N: {ok_all} (fails at N={bad}); fixed alpha: N=1 {fixed1['converged']}, N=50 diverged={fixed50['diverged']}",
                       "scaled converges for all N <= 50; fixed converges at N=1, not at N=50",
                       {"scaled": res, "fixed_N1": fixed1, "fixed_N50": fixed50})


@harness.register_claim("maml-convex-no-step-condition")
class MamlConvexNoStepCondition(Claim):
    citation = "Ji, Yang, Liang, JMLR 2022 (arXiv 2002.07836), Sec. 4 vs Sec. 5 (the strongly-convex/convex case needs no alpha = O(1/N))"
    statement = ("On convex tasks (meta linear regression) a fixed alpha = c/L needs no N-dependent condition: meta-GD with "
                 "beta = 1/L meets the N-independent descent bound min_k ||grad Phi_k||^2 <= 2 (Phi(x_0) - Phi*)/(beta K) at every N up to 50.")
    control = "the same fixed alpha on indefinite (nonconvex) tasks: the bound must fail at large N"
    rule = "holds iff for every N in {1..50} the run does not diverge and min_k ||grad Phi_k||^2 <= 2 (Phi(x_0) - Phi*) / (beta K)"

    def evaluate(self, size: str, control: bool) -> Verdict:
        with single_thread():
            return self._evaluate(size, control)

    def _evaluate(self, size: str, control: bool) -> Verdict:
        K = 200 if size == "ci" else 2000
        L = 1.0
        beta = 1.0 / L
        res = {}
        for N in NS_CI:
            p = harness.problem("meta-quadratic", curvature="indefinite" if control else "convex",
                                unroll_steps=N, unroll_lr=C_STEP / L, L=L)
            tr = outer_loop(p, harness.estimator("exact"), K, beta, seed=0)
            phi_star = p.value(p.stationary_points()[0])
            gap0 = p.value(p.x0()) - phi_star
            bound = 2 * gap0 / (beta * K)
            gmin = min(tr.grad_norm_sq)
            res[N] = {"diverged": tr.diverged, "grad_sq_min": gmin, "bound": bound, "mu_phi": p.constants["mu_phi"],
                      "ok": (not tr.diverged) and gap0 >= 0 and gmin <= bound}
        holds = all(r["ok"] for r in res.values())
        bad = [N for N, r in res.items() if not r["ok"]]
        return Verdict(holds, f"bound met at all N: {holds} (fails at N={bad})", "min ||grad||^2 <= 2 gap_0/(beta K) at every N", res)
