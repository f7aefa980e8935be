"""Claims of the single-loop, variance-reduced, fully first-order, zeroth-order and HOAG families (issue 15).

Sources:
- Dagreou, Ablin, Vaiter, Moreau, "A framework for bilevel optimization that enables stochastic and
  global variance reduction algorithms", NeurIPS 2022 (arXiv 2201.13409): Theorem 1 (SOBA), Theorem 2 (SABA).
- Kwon, Kwon, Wright, Nowak, "A Fully First-Order Method for Stochastic Bilevel Optimization", ICML 2023
  (arXiv 2301.10945): Lemma 3.1, ||grad L*_lambda - grad Phi|| = O(1/lambda).
- Nesterov & Spokoiny, "Random gradient-free minimization of convex functions", FoCM 2017: Gaussian
  smoothing, ||grad Phi_mu - grad Phi|| = O(mu^2) for the central scheme on a smooth Phi (their Lemma 3
  for the Hessian-Lipschitz case), and the variance of the difference quotient of noisy values, O(d / mu^2).
- Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016 (arXiv 1602.02355),
  Theorem 1: with summable tolerances HOAG reaches a stationary point.

Every claim has a negative control that breaks its mechanism (the rule must fail on it), and
``MUTATIONS`` lists in-process breakages of the estimators with the claims that must catch them:
``(name, caught_by, patch)`` where ``patch()`` returns a context manager applying the breakage.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager

import numpy as np
import torch
from scipy import stats

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.outer import outer_loop
from blobench.measure.sampling import draw_noise, estimate

from blobench.estimators.first_order import F2SA
from blobench.estimators.single_loop import SOBA, TTSA
from blobench.estimators.variance_reduced import SABA
from blobench.estimators.zeroth_order import ES


def fit_power(xs: list[float], ys: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares exponent of ys ~ C xs^a on log-log axes, with its t-interval from the fit's residuals
    (:func:`blobench.measure.complexity.fit_exponent`, the one log-log fit; NaN with fewer than 3 positive points)."""
    from blobench.measure.complexity import fit_exponent

    f = fit_exponent(xs, ys, level)
    return f["slope"], f["lo"], f["hi"]


def running_stationarity(tr, checkpoints: list[int]) -> list[float]:
    """(1/T) sum_{t<T} ||grad Phi(x_t)||^2 at each checkpoint T: the quantity of Dagreou et al.'s Theorems 1-2."""
    g = np.asarray(tr.grad_norm_sq, float)
    if tr.diverged or len(g) < max(checkpoints) + 1:
        return [float("inf")] * len(checkpoints)
    return [float(g[:T].mean()) for T in checkpoints]


def _finite_quadratic():
    return harness.problem("quadratic", dim=5, kappa=4, rho=1.0, noise=0.5, n_samples=20)


@contextlib.contextmanager
def _setattr(obj, name: str, value):
    """Set ``obj.name`` for the duration; an attribute the class only inherited is removed again afterwards."""
    own = name in vars(obj)
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def _running_rate_verdict(e, size: str, bound: float, predicted: str) -> Verdict:
    """SOBA's and TTSA's rule: on the finite-sum quadratic, outer steps 0.2 t^-0.6 (the shared outer loop's power
    schedule), the seed-averaged (1/T) sum_t ||grad Phi(x_t)||^2 at T/8, T/4, T/2, T has a fitted exponent in T at
    most ``bound`` with the upper end of its 95% interval below 0."""
    p = _finite_quadratic()
    T = 320 if size == "ci" else 3200
    checks = [T // 8, T // 4, T // 2, T]
    seeds = [0, 1] if size == "ci" else list(range(5))
    curves = [running_stationarity(outer_loop(p, e, T, 0.2, "power", seed=s, power=0.6), checks) for s in seeds]
    avg = np.mean(curves, axis=0)
    a, lo, hi = fit_power(checks, avg)
    ok = bool(np.all(np.isfinite(avg))) and a <= bound and hi < 0
    return Verdict(ok, f"exponent {a:.2f} [{lo:.2f}, {hi:.2f}]", predicted,
                   {"T": checks, "avg_grad_norm_sq": avg.tolist(), "seeds": seeds, "exponent": a, "interval": [lo, hi]})


# -- single loop ----------------------------------------------------------------------------------------------
@harness.register_claim("soba-stationarity-rate")
class SOBARate(Claim):
    citation = "Dagreou, Ablin, Vaiter, Moreau 2022 (arXiv 2201.13409), Theorem 1 (SOBA, rho_t ~ t^-2/5, gamma_t ~ t^-3/5)"
    statement = ("On a finite-sum quadratic, SOBA with decreasing steps rho_t = rho_0 t^-2/5, gamma_t = gamma_0 t^-3/5 has "
                 "(1/T) sum_t ||grad Phi(x_t)||^2 = O(T^-2/5): the fitted exponent against T (seed-averaged) is at most -0.4 "
                 "and the upper end of its 95% interval is below 0.")
    control = "v frozen at 0 (the linear-system direction D_v dropped): SOBA degenerates to a biased first-order method"
    BOUND = -0.4

    def evaluate(self, size: str, control: bool) -> Verdict:
        e = harness.estimator("soba", inner_lr=0.1, solver_lr=0.1, decay=0.4)
        with _soba_no_v() if control else contextlib.nullcontext():
            return _running_rate_verdict(e, size, self.BOUND, "<= -0.4 (Theorem 1: O(T^-2/5))")


@harness.register_claim("ttsa-stationarity-rate")
class TTSARate(Claim):
    citation = ("Hong, Wai, Wang, Yang 2020 (arXiv 2007.05170), Theorem 1, nonconvex outer case (TTSA, beta_t ~ t^-2/5 on y, "
                "alpha_t ~ t^-3/5 on x: (1/K) sum_k E||grad Phi(x_k)||^2 = O(K^-2/5))")
    statement = ("On a finite-sum quadratic, TTSA with its two timescales (one warm-started SGD step on y at inner_lr t^-0.4, "
                 "outer steps 0.2 t^-0.6) has (1/T) sum_t ||grad Phi(x_t)||^2 = O(T^-2/5): the fitted exponent against T "
                 "(seed-averaged) is at most -0.4 and the upper end of its 95% interval is below 0.")
    control = "y not carried across iterations (restarted at init_inner(x) each step): the fast timescale stops tracking y*(x_t)"
    BOUND = -0.4

    def evaluate(self, size: str, control: bool) -> Verdict:
        e = harness.estimator("ttsa", inner_lr=0.3, decay=0.4)
        with _setattr(TTSA, "track_y", False) if control else contextlib.nullcontext():
            return _running_rate_verdict(e, size, self.BOUND, "<= -0.4 (Theorem 1: O(K^-2/5), an upper bound)")


# -- variance reduced -------------------------------------------------------------------------------------------
@harness.register_claim("saba-variance-reduction")
class SABAvsSOBA(Claim):
    citation = "Dagreou, Ablin, Vaiter, Moreau 2022 (arXiv 2201.13409), Theorem 2 (SABA, constant steps: O(1/T))"
    statement = ("On a finite-sum quadratic (n = m = 20) with the same constant steps, SABA's (1/T) sum_t ||grad Phi(x_t)||^2 "
                 "decays like 1/T (fitted exponent <= -0.8, predicted -1), and over the second half of the run SABA's mean "
                 "||grad Phi(x_t)||^2 is at least 10x below SOBA's, which stalls at its variance floor.")
    control = "SABA's memory table never updated after the first pass (SAGA directions keep their variance)"
    _soba_cache: dict = memo()

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = _finite_quadratic()
        T = 240 if size == "ci" else 2000
        checks = [T // 8, T // 4, T // 2, T]
        seeds = [0, 1] if size == "ci" else list(range(5))
        kw = {"inner_lr": 0.05, "solver_lr": 0.05}
        lr = 0.05

        def run(name: str) -> tuple[np.ndarray, float]:
            e = harness.estimator(name, **kw)
            ctx = _setattr(SABA, "update_memory", False) if control and name == "saba" else contextlib.nullcontext()
            avg, tail = [], []
            with ctx:
                for s in seeds:
                    tr = outer_loop(p, e, T, lr, seed=s)
                    avg.append(running_stationarity(tr, checks))
                    tail.append(float(np.mean(tr.grad_norm_sq[T // 2:T])) if not tr.diverged else float("inf"))
            return np.mean(avg, axis=0), float(np.mean(tail))

        saba, saba_tail = run("saba")
        if size not in self._soba_cache:  # SOBA is the same run for the claim and its control
            self._soba_cache[size] = run("soba")
        soba, soba_tail = self._soba_cache[size]
        a, lo, hi = fit_power(checks, saba)
        ratio = soba_tail / saba_tail
        ok = bool(np.all(np.isfinite(saba))) and a <= -0.8 and ratio >= 10
        return Verdict(ok, f"SABA exponent {a:.2f} [{lo:.2f}, {hi:.2f}]; second-half mean SOBA/SABA: {ratio:.3g}",
                       "exponent -1 (<= -0.8); ratio >= 10",
                       {"T": checks, "saba": saba.tolist(), "soba": soba.tolist(), "exponent": a, "interval": [lo, hi],
                        "soba_exponent": fit_power(checks, soba)[0], "saba_tail": saba_tail, "soba_tail": soba_tail,
                        "ratio": ratio, "seeds": seeds})


# -- fully first order ----------------------------------------------------------------------------------------
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


# -- zeroth order ---------------------------------------------------------------------------------------------
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


# -- HOAG -----------------------------------------------------------------------------------------------------
@harness.register_claim("hoag-summable-tolerance")
class HOAGTolerance(Claim):
    citation = "Pedregosa 2016 (arXiv 1602.02355), Theorem 1 (summable tolerances eps_k -> stationary point)"
    statement = ("HOAG with summable tolerances eps_k = 0.01 * 0.7^k reaches a stationary point of Phi on a quadratic and on "
                 "logreg-l2: ||grad Phi(x_T)||^2 <= 1e-14 after T outer steps with the outer loop's fixed step.")
    control = "a constant (non-summable) tolerance eps_k = 0.01"

    def evaluate(self, size: str, control: bool) -> Verdict:
        decay = 1.0 if control else 0.7
        runs = {}
        q = harness.problem("quadratic", dim=5 if size == "ci" else 20, kappa=4, rho=1.0)
        lg = harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)
        for name, p, lr, T in (("quadratic", q, 0.4, 50), ("logreg-l2", lg, 5.0, 40)):
            tr = outer_loop(p, harness.estimator("hoag", tol=1e-2, tol_decay=decay), T, lr, eval_every=T)
            runs[name] = tr.grad_norm_sq[-1]
        ok = all(v <= 1e-14 for v in runs.values())
        return Verdict(ok, "; ".join(f"{k}: {v:.2e}" for k, v in runs.items()), "||grad Phi(x_T)||^2 <= 1e-14 on both",
                       {"final_grad_norm_sq": runs, "tol_decay": decay})


# -- mutation suite ---------------------------------------------------------------------------------------------
def _patch(obj, name: str, value) -> Callable[[], ContextManager]:
    return lambda: _setattr(obj, name, value)


def _soba_no_v() -> ContextManager:
    """SOBA's v never moves (the linear-system step dropped)."""
    orig = SOBA.steps

    def steps(self, oracles, t):
        rho, _ = orig(self, oracles, t)
        return rho, 0.0 * rho

    return _setattr(SOBA, "steps", steps)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("saba-memory-not-updated", ("saba-variance-reduction",), _patch(SABA, "update_memory", False)),
    ("soba-v-step-dropped", ("soba-stationarity-rate",), _soba_no_v),
    ("ttsa-y-tracking-dropped", ("ttsa-stationarity-rate",), _patch(TTSA, "track_y", False)),
    ("f2sa-grad-y-f-dropped", ("f2sa-penalty-bias",), _patch(F2SA, "use_outer_in_y", False)),
    ("es-wrong-scale", ("zo-smoothing-bias",), _patch(ES, "central_scale", False)),
]
