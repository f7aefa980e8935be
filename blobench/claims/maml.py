"""Multi-step MAML claims (Ji, Yang, Liang, "Theoretical Convergence of Multi-Step Model-Agnostic
Meta-Learning", JMLR 2022, arXiv 2002.07836), checked on the ``meta-quadratic`` task family.

- maml-meta-gradient-growth: with nonconvex tasks the N-step meta-gradient is J_N^T grad l(w_N) with
  ||J_N|| = ||prod_j (I - alpha H)|| <= (1 + alpha L)^N (the paper's Prop. 1 / Lemma 1), so with a fixed
  alpha it grows geometrically in N, while alpha = c/(N L) keeps (1 + c/N)^N <= e^c bounded (their Thm. 1
  step-size condition alpha = O(1/(N L))).
- maml-step-size-convergence (on ``meta-cosine``: nonconvex tasks bounded below, Thm. 1's setting): the
  meta-gradient's Lipschitz constant L_N and the largest step beta keeping the descent lemma, against N: with
  a fixed alpha L_N grows like (1 + alpha lambda_-)^{2N} and beta must shrink; with alpha = c/(N L) both are
  N-independent (Thm. 1: beta and the rate do not degrade with N).
- maml-convex-no-step-condition: on convex tasks (meta linear regression) ||I - alpha H|| <= 1 for any
  alpha <= 1/L, so a fixed alpha works at every N: the boundary of the nonconvex claims.

Meta-gradients: at size "ci" the problem's closed-form unrolled gradient (``exact``; equal to the ``itd``
estimator's reverse-mode MAML gradient to 1e-15, tested in tests/test_ji_problems.py); at "full" the
``itd`` estimator itself (counted HV/JV oracles) for the growth claim.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.metrics import fit_rate
from blobench.measure.outer import outer_loop
from blobench.claims.anil import single_thread

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


@memo
@functools.lru_cache(maxsize=64)
def lipschitz_and_step(N: int, alpha: float, steps: int = 40, betas: tuple[float, ...] | None = None) -> dict[str, Any]:
    """On ``meta-cosine`` (bounded-below nonconvex tasks): the meta-gradient's Lipschitz constant
    L_N = max |Phi_N''| over a grid (and a fine grid around every task centre, where the curvature
    peaks at |phi''(0)| (1 + alpha lambda_-)^{2N} / T), and the largest step beta on a geometric grid for
    which meta-gradient descent satisfies the descent lemma Phi(x+) <= Phi(x) - beta/2 ||grad||^2 at every
    one of ``steps`` steps from every start (a grid over the task region plus the sharp zones)."""
    p = harness.problem("meta-cosine", unroll_steps=N, unroll_lr=alpha)
    lam = p.constants["neg_curv"]
    cs = p.cs.reshape(-1)
    w = 3.0 * (1.0 + alpha * lam) ** (-N)  # half-width of the sharp zone around each centre
    L_N = p.lipschitz()
    betas = 2.0 ** np.arange(-8, 4, 1.0) if betas is None else np.asarray(betas, float)
    starts = torch.cat([torch.linspace(float(cs.min()) - 1, float(cs.max()) + 1, 21, dtype=torch.float64),
                        (cs[:, None] + torch.linspace(-w, w, 11, dtype=torch.float64)).reshape(-1)])
    S, B = len(starts), len(betas)
    X = starts.repeat(B).reshape(-1, 1)
    bv = torch.tensor(np.repeat(betas, S), dtype=torch.float64)
    v = p.value_many(X)
    ok = torch.ones(S * B, dtype=torch.bool)
    for _ in range(steps):
        g = p.meta_grad_many(X)[:, 0]
        X = X - (bv * g)[:, None]
        v2 = p.value_many(X)
        ok &= torch.isfinite(v2) & (v2 <= v - 0.5 * bv * g * g + 1e-12 * v.abs().clamp(min=1.0))
        v = torch.where(torch.isfinite(v2), v2, v)
        X = torch.where(torch.isfinite(X), X, torch.zeros_like(X))
    okb = ok.reshape(B, S).all(1).numpy()
    bad = np.nonzero(~okb)[0]
    i = int(bad[0]) - 1 if len(bad) else B - 1
    beta_max = float(betas[i]) if i >= 0 else 0.0
    return {"N": N, "alpha": alpha, "L_N": L_N, "peak_at_centre_pred": float(abs(p.p["a"] - p.p["b"]) * (1 + alpha * lam) ** (2 * N) / p.p["tasks"]),
            "beta_max": beta_max, "beta_max_times_L_N": beta_max * L_N, "descent_lemma_step": 1.0 / L_N}


NS_STEP = (1, 4, 8, 12, 16, 20)


@harness.register_claim("maml-step-size-convergence")
class MamlStepSizeConvergence(Claim):
    citation = ("Ji, Yang, Liang, JMLR 2022 (arXiv 2002.07836), Prop. 1 and Thm. 1 (nonconvex tasks bounded below, "
                "alpha = c/(N L), N-independent beta)")
    statement = ("On bounded-below nonconvex tasks (meta-cosine: phi = a/2 t^2 + b cos t, L = a + b, negative curvature "
                 "lambda_- = b - a), the meta-gradient's Lipschitz constant L_N grows geometrically in N with a fixed "
                 "alpha = c/L (fitted per-step factor above 1 and at most (1 + alpha L)^2, the smoothness bound of "
                 "Prop. 1) and the largest step beta keeping the descent lemma shrinks (by 4x or more from N = 1 to 20); "
                 "with alpha = c/(N L) L_N stays within e^{2c} of L_1 and the largest such beta stays N-independent "
                 "(within 2x) and at least 1/L_N (the descent lemma's guarantee, up to the beta grid's factor 2).")
    control = "alpha = c/L in the scaled arm too (the 1/N scaling removed): L_N and the stable beta must then depend on N"
    rule = ("holds iff fixed alpha: factor CI lo > 1, hi <= (1 + alpha L)^2, beta_max(20) <= beta_max(1)/4; scaled: "
            "max L_N <= e^{2c} L_1, beta_max(N) >= 1/(2 L_N) for all N, beta_max(20) >= beta_max(1)/2 (beta grid: powers of 2)")

    def evaluate(self, size: str, control: bool) -> Verdict:
        with single_thread():
            return self._evaluate(size, control)

    def _evaluate(self, size: str, control: bool) -> Verdict:
        L = harness.problem("meta-cosine").constants["L"]
        Ns = NS_STEP if size == "ci" else (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
        steps = 40 if size == "ci" else 200
        fixed = [lipschitz_and_step(N, C_STEP / L, steps) for N in Ns]
        scaled = [lipschitz_and_step(N, C_STEP / L if control else C_STEP / (N * L), steps) for N in Ns]
        tail = [r for r in fixed if r["N"] >= 8]
        a = C_STEP / L
        fit = fit_rate([r["N"] for r in tail], [r["L_N"] for r in tail], bound=(1 + a * L) ** 2)
        lam = harness.problem("meta-cosine").constants["neg_curv"]
        grows = math.isfinite(fit.rate_lo) and fit.rate_lo > 1 and not fit.rate_violation
        fixed_shrinks = fixed[-1]["beta_max"] <= fixed[0]["beta_max"] / 4
        sc_ratio = max(r["L_N"] for r in scaled) / scaled[0]["L_N"]
        bounded = sc_ratio <= math.exp(2 * C_STEP)
        guaranteed = all(r["beta_max"] >= 0.5 / r["L_N"] for r in scaled)  # 1/L_N up to the beta grid's factor 2
        stable = scaled[-1]["beta_max"] >= scaled[0]["beta_max"] / 2
        holds = grows and fixed_shrinks and bounded and guaranteed and stable
        fmt = lambda rows: ", ".join(f"N={r['N']}: L_N {r['L_N']:.3g}, beta {r['beta_max']:.3g} "  # noqa: E731
                                     f"(beta L_N {r['beta_max_times_L_N']:.2g})" for r in rows)
        return Verdict(holds,
                       f"fixed alpha: L_N factor per step {fit.text()} (lambda_- peak predicts {(1 + a * lam) ** 2:.4f}); "
                       f"{fmt(fixed)}. {'scaled' if not control else 'control (fixed)'} alpha: max L_N/L_1 = {sc_ratio:.3g}; "
                       f"{fmt(scaled)}",
                       f"fixed: factor in (1, {(1 + a * L) ** 2:.4f}], beta shrinks >= 4x; scaled: L_N/L_1 <= "
                       f"{math.exp(2 * C_STEP):.3f}, beta_max >= 1/(2 L_N) and N-independent (2x)",
                       {"fixed": fixed, "scaled": scaled, "fixed_factor": fit.rate, "fixed_factor_ci": [fit.rate_lo, fit.rate_hi],
                        "factor_lambda_pred": (1 + a * lam) ** 2, "factor_bound": (1 + a * L) ** 2,
                        "scaled_L_ratio": sc_ratio, "checks": {"fixed_grows": grows, "fixed_beta_shrinks": fixed_shrinks,
                                                              "scaled_bounded": bounded, "scaled_beta_guaranteed": guaranteed,
                                                              "scaled_beta_stable": stable}},
                       [fit.columns("L_N growth factor per step (fixed alpha)")])


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
        ratio = max((r["grad_sq_min"] / r["bound"] if r["bound"] > 0 else float("inf")) for r in res.values())
        return Verdict(holds, f"bound met at all N: {holds} (fails at N={bad}); tightness max_N min||grad||^2/bound = {ratio:.3g}",
                       "min ||grad||^2 <= 2 gap_0/(beta K) at every N", {**{str(k): v for k, v in res.items()}, "max_ratio": ratio})
