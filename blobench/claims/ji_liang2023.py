"""Ji & Liang's lower bounds and AccBiO as executable claims.

Source: K. Ji and Y. Liang, "Lower Bounds and Accelerated Algorithms for Bilevel Optimization", JMLR 24
(2023), arXiv 2102.03926 ("Ji & Liang" below), as its abstract states them: the strongly-convex-strongly-
convex lower bound Omega(1/(sqrt(mu_x) mu_y)) for zero-respecting methods, the accelerated optimizer AccBiO
and its improved upper bounds, that upper and lower bounds match (up to logs) when the inner problem is
quadratic with a constant-level condition number, and that bilevel is provably harder than minimax. The claims
in the first part were written when only the abstract was readable and run on this project's chain instance
``lb-scsc`` (blobench/problems/lb_scsc.py states the construction, why it is in the theorem's class, and its exact
per-instance zero-respecting lower bound); those of the second part (from ``JL_CITE`` on, and
``jl-lower-bound-respected``, decided per oracle call since issue 28) run on the paper's own instances jl-scsc and
jl-csc, read from the JMLR PDF. Oracle calls are those the
oracle layer counts (blobench.core.oracles), never an estimator's own figure.

Each claim has a negative control that breaks the mechanism it tests. ``MUTATIONS`` lists in-process
breakages for the mutation suite: (name, claims that must catch it, patch() -> context manager).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable
from unittest import mock

import numpy as np
import torch

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.complexity import calls_to_target, fit_exponent, theory_budget, upper_bound_order
from blobench.core.oracles import Oracles
from blobench.measure.outer import outer_loop

CITE = "Ji & Liang, JMLR 24 (2023), arXiv 2102.03926"


# ----------------------------------------------------------------------------- controls that cheat

class _Cheat(harness.Estimator):
    """Negative-control estimator (not registered): reads the true inner solution through the problem object, a
    channel the oracle layer does not count.

    mode "hypergradient": returns grad Phi(x) = problem.hypergradient(x) with no counted call at all.
    mode "inner-solution": y = problem.inner_solution(x) (not counted), v = [grad2_yy g]^{-1} grad_y f solved
    exactly through the problem's A (not counted), then counted grad_x f, grad_y f and one JV: what AID-BiO
    would do with a free, exact inner and linear solve. Neither is zero-respecting."""

    name = "cheat"
    outer_momentum = "nesterov"

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def estimate(self, oracles, x, noise, state=None):
        p = oracles.problem
        if self.mode == "hypergradient":
            return harness.Estimate(p.hypergradient(x))
        y = p.inner_solution(x)
        gx, gy = oracles.grad_f(x, y)
        v = torch.linalg.solve(p.A, gy)
        return harness.Estimate(gx - oracles.jvp(x, y, v))


class _SpanOracles(Oracles):
    """Oracles that record, at every counted call, the chain depth (largest nonzero index) of its input vectors
    against the number of calls made before it (cumulative over the run, unaffected by the per-step reset)."""

    def __init__(self, problem):
        super().__init__(problem)
        self.total = 0
        self.log: list[tuple[int, int]] = []  # (calls before this one, depth of its inputs)

    def _count(self, name: str, k: int = 1) -> None:
        super()._count(name, k)
        self.total += k

    def _see(self, *vs: torch.Tensor) -> None:
        self.log.append((self.total, max(self.problem.chain_depth(v) for v in vs)))

    def grad_x_f(self, x, y, batch=None):
        self._see(x, y)
        return super().grad_x_f(x, y, batch)

    def grad_y_f(self, x, y, batch=None):
        self._see(x, y)
        return super().grad_y_f(x, y, batch)

    def grad_f(self, x, y, batch=None):
        self._see(x, y)
        return super().grad_f(x, y, batch)

    def grad_y_g(self, x, y, batch=None):
        self._see(x, y)
        return super().grad_y_g(x, y, batch)

    def hvp(self, x, y, v, batch=None):
        self._see(x, y, v)
        return super().hvp(x, y, v, batch)

    def jvp(self, x, y, v, batch=None):
        self._see(x, y, v)
        return super().jvp(x, y, v, batch)

    def hvp_jvp(self, x, y, v, batch=None):
        self._see(x, y, v)
        return super().hvp_jvp(x, y, v, batch)


# ----------------------------------------------------------------------------- shared experiment

BUDGET_SCALE = 2.0  # inner / solver steps = 2 x (kappa_y for GD-type, sqrt(kappa_y) for CG/AGD), as in the default matrix


def _method(problem, name: str, **kw) -> harness.Estimator:
    """An estimator with the theory budgets of blobench.measure.complexity.theory_budget (x BUDGET_SCALE); ``kw`` overrides."""
    b = theory_budget(name, kw, problem.constants, BUDGET_SCALE)
    cls_params = type(harness.estimator(name)).params
    return harness.estimator(name, **{**{k: v for k, v in b.items() if k in cls_params}, **kw})


def _calls(problem, est, eps: float, momentum: str = "auto", max_steps: int = 20000) -> float:
    h = calls_to_target(problem, est, [eps], max_steps=max_steps, momentum=momentum)["by_eps"][eps]
    return float("nan") if h is None else float(h["total"])


def _kx_sweep(size: str) -> tuple[list[float], float, float, int]:
    """(mu_x grid, mu_y, eps, dim): kappa_y = 2 fixed (the paper's matching regime), kappa_x swept."""
    if size == "ci":
        return [0.4, 0.2, 0.1, 0.05], 0.5, 1e-4, 80
    return [0.4, 0.2, 0.1, 0.05, 0.025, 0.0125], 0.5, 1e-6, 240


class _KxSweep:
    """Calls to eps of AID-BiO (aid-cg, warm start, outer GD), AccBiO (outer Nesterov) and AccBiO with its
    outer momentum dropped, and the exact span lower bound, over the kappa_x grid; cached per claim object."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}

    def sweep(self, size: str, which: str) -> dict[str, Any]:
        key = (size, which)
        if key in self._cache:
            return self._cache[key]
        mus, mu_y, eps, dim = _kx_sweep(size)
        kx, calls, lbs, ubs = [], [], [], []
        for mu_x in mus:
            p = harness.problem("lb-scsc", dim=dim, mu_x=mu_x, mu_y=mu_y)
            c = p.constants
            kx.append(c["kappa_x"])
            lbs.append(float(p.calls_lower_bound(eps)))
            if which == "aid-bio":
                e, mom = _method(p, "aid-cg", warm_start=True), "none"
            elif which == "accbio":
                e, mom = _method(p, "accbio"), "nesterov"
            elif which == "accbio-no-momentum":
                e, mom = _method(p, "accbio"), "none"
            else:
                raise AssertionError(which)
            calls.append(_calls(p, e, eps, mom))
            ubs.append(upper_bound_order("accbio" if (which == "accbio") else "aid-cg", {"inner_solver": e.p["inner_solver"]},
                                         c, eps, "value_gap"))
        out = {"mu_x": mus, "mu_y": mu_y, "eps": eps, "kappa_x": kx, "calls": calls, "lower_bound": lbs,
               "upper_bound_order": ubs, "fit": fit_exponent(kx, calls), "fit_lb": fit_exponent(kx, lbs),
               "fit_ub": fit_exponent(kx, ubs)}
        self._cache[key] = out
        return out


def _diff_interval(a: dict, b: dict, level: float = 0.95) -> tuple[float, float, float]:
    """a.slope - b.slope with a t-interval (independent fits; Welch-style pooled stderr, df = n_a + n_b - 4)."""
    from scipy import stats

    d = a["slope"] - b["slope"]
    se = math.hypot(a["stderr"], b["stderr"])
    t = stats.t.ppf(0.5 + level / 2, df=max(a["n"] + b["n"] - 4, 1))
    return d, d - t * se, d + t * se


# ----------------------------------------------------------------------------- claims

@harness.register_claim("jl-zero-respecting-span")
class ZeroRespectingSpan(Claim):
    citation = CITE + ", the zero-respecting span argument of its lower bounds; Nesterov 2004, Sec. 2.1.2; Carmon et al. 2020 (zero-respecting algorithms)"
    statement = ("On lb-scsc every oracle call of AID-BiO, ITD-BiO and AccBiO (GD and AGD inner solvers, outer GD and "
                 "Nesterov) takes inputs whose chain depth (largest nonzero index) is at most the number of calls made "
                 "before it: the support grows by at most one coordinate per oracle call.")
    control = ("a non-zero-respecting method: AID-BiO whose inner solution and linear solve are read exactly from the "
               "problem (dense A^{-1}) instead of computed by counted oracle calls")

    METHODS = (("aid-cg", {"warm_start": True}, "none"), ("aid-cg", {"inner_solver": "agd"}, "none"),
               ("itd", {"warm_start": True}, "none"), ("accbio", {}, "nesterov"))

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("lb-scsc", dim=60 if size == "ci" else 200, mu_x=0.2, mu_y=0.35)
        steps = 15 if size == "ci" else 60
        runs = [("cheat", _Cheat("inner-solution"), "nesterov")] if control else [
            (f"{n}{'-' + kw['inner_solver'] if 'inner_solver' in kw else ''}", _method(p, n, **kw), m)
            for n, kw, m in self.METHODS]
        ev, ok = {}, True
        for label, est, mom in runs:
            o = _SpanOracles(p)
            outer_loop(p, est, steps, 1 / p.constants["L_phi"], momentum=mom, oracles=o)
            excess = max(d - k for k, d in o.log)
            final_depth = max(d for _, d in o.log)
            ok &= excess <= 0
            ev[label] = {"calls": o.total, "max_depth_minus_calls": excess, "final_depth": final_depth,
                         "depth_per_call": final_depth / max(o.total, 1)}
        worst = max(v["max_depth_minus_calls"] for v in ev.values())
        return Verdict(ok, f"max over calls of (input depth - calls before it) = {worst}; depth reached per call: "
                       + ", ".join(f"{k} {v['depth_per_call']:.3f}" for k, v in ev.items()),
                       "<= 0 (one coordinate per call at most)", {"runs": ev, "dim": p.dim_x})


_SWEEP_DOC = ("lb-scsc with kappa_y = 2 fixed (mu_y = 0.5, L = 1) and mu_x swept (kappa_x = L_Phi / mu_x from ~11 to ~80 at ci, "
              "to ~600 at full); calls to Phi - Phi* <= eps; exponents = linregress slopes of log calls on log kappa_x "
              "with 95% t-intervals")


@harness.register_claim("jl-accbio-kappa-improvement")
class AccBiOImprovement(Claim):
    citation = CITE + ", AccBiO's upper bound (outer Nesterov: sqrt(kappa_x) log(1/eps) outer iterations) vs AID-BiO's (kappa_x log(1/eps))"
    statement = ("AccBiO's fitted kappa_x exponent of oracle calls to eps is smaller than AID-BiO's: the difference's 95% "
                 "interval excludes 0 and lies within 0.1 of the theory's improvement (the difference of the two "
                 "methods' upper-bound orders fitted on the same grid, 0.5 asymptotically). " + _SWEEP_DOC)
    control = "AccBiO with its outer Nesterov momentum dropped (plain gradient steps on x, same inner/linear AGD)"
    TOL = 0.1

    def __init__(self) -> None:
        self.s = _KxSweep()

    def evaluate(self, size: str, control: bool) -> Verdict:
        aid = self.s.sweep(size, "aid-bio")
        acc = self.s.sweep(size, "accbio-no-momentum" if control else "accbio")
        d, lo, hi = _diff_interval(aid["fit"], acc["fit"])
        pred = aid["fit_ub"]["slope"] - self.s.sweep(size, "accbio")["fit_ub"]["slope"]
        ok = lo > 0 and abs(d - pred) <= self.TOL
        return Verdict(ok, f"AID-BiO exponent {aid['fit']['slope']:.3f} [{aid['fit']['lo']:.3f}, {aid['fit']['hi']:.3f}], "
                       f"AccBiO {acc['fit']['slope']:.3f} [{acc['fit']['lo']:.3f}, {acc['fit']['hi']:.3f}]; "
                       f"improvement {d:.3f} [{lo:.3f}, {hi:.3f}]",
                       f"improvement > 0 and within {self.TOL} of theory's {pred:.3f}",
                       {"aid_bio": aid, "accbio": acc, "improvement": d, "interval": [lo, hi], "predicted": pred})


@harness.register_claim("jl-accbio-matches-lower-bound")
class AccBiOMatchesLowerBound(Claim):
    citation = CITE + ", abstract: AccBiO's upper and lower bounds match (up to logs) for a quadratic inner problem with constant-level condition number"
    statement = ("With kappa_y constant, AccBiO's fitted kappa_x exponent of oracle calls to eps agrees with the fitted "
                 "exponent of the instance's exact zero-respecting lower bound within 0.15 (the SCSC bound's 1/(sqrt(mu_x) "
                 "mu_y): 0.5 asymptotically), and AccBiO never uses fewer calls than the bound. " + _SWEEP_DOC)
    control = "AccBiO with its outer Nesterov momentum dropped (its exponent is then AID-BiO's ~1, not the bound's ~0.5)"
    TOL = 0.15

    def __init__(self) -> None:
        self.s = _KxSweep()

    def evaluate(self, size: str, control: bool) -> Verdict:
        acc = self.s.sweep(size, "accbio-no-momentum" if control else "accbio")
        gap = acc["fit"]["slope"] - acc["fit_lb"]["slope"]
        above = all(c >= lb for c, lb in zip(acc["calls"], acc["lower_bound"]) if np.isfinite(c))
        ratio = [c / lb for c, lb in zip(acc["calls"], acc["lower_bound"])]
        ok = abs(gap) <= self.TOL and above and all(np.isfinite(acc["calls"]))
        return Verdict(ok, f"AccBiO exponent {acc['fit']['slope']:.3f} [{acc['fit']['lo']:.3f}, {acc['fit']['hi']:.3f}] vs "
                       f"lower bound {acc['fit_lb']['slope']:.3f} [{acc['fit_lb']['lo']:.3f}, {acc['fit_lb']['hi']:.3f}]; "
                       f"calls / bound {min(ratio):.2f}..{max(ratio):.2f}",
                       f"|difference| <= {self.TOL} and calls >= bound", {"accbio": acc, "exponent_gap": gap,
                                                                         "calls_over_bound": ratio})


@harness.register_claim("jl-agd-inner-rate")
class AGDInnerRate(Claim):
    citation = (CITE + ", AccBiO's accelerated inner loop; Nesterov 2004, Theorem 2.2.3 (constant-step scheme for "
                "strongly convex functions)")
    statement = ("The shared AGD inner solver (inner_solver='agd', blobench.core.numerics.inner_agd) on lb-scsc's inner problem "
                 "(kappa_y = 100) satisfies g(y_D) - g* <= (1 - 1/sqrt(kappa_y))^D (g(y_0) - g* + mu_y/2 ||y_0 - y*||^2) "
                 "for every D, i.e. it contracts at the accelerated rate that AccBiO's sqrt(kappa_y) inner budget relies on.")
    control = "the same solver with its momentum dropped (gradient descent, rate 1 - 1/kappa_y) under the same bound"

    def evaluate(self, size: str, control: bool) -> Verdict:
        from blobench.core.numerics import inner_agd, strongly_convex_momentum

        p = harness.problem("lb-scsc", dim=100 if size == "ci" else 300, mu_x=0.1, mu_y=0.01, L=1.0)
        x = torch.randn(p.dim_x, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        mu, L = p.constants["mu_y"], p.constants["L"]
        ys = p.inner_solution(x)
        g = lambda y: float(p.inner(x, y))  # noqa: E731
        y0 = p.init_inner(x)
        c0 = g(y0) - g(ys) + mu / 2 * float(torch.sum((y0 - ys) ** 2))
        q = 1 - math.sqrt(mu / L)
        m = 0.0 if control else strongly_convex_momentum(1 / L, mu)
        Ds = [10, 25, 50, 100, 150, 200] if size == "ci" else list(range(10, 610, 30))
        o = Oracles(p)
        gaps, bounds = [], []
        for D in Ds:
            yD, _ = inner_agd(o, x, y0, D, 1 / L, m)
            gaps.append(g(yD) - g(ys))
            bounds.append(q**D * c0)
        ok = all(a <= b * (1 + 1e-9) + 1e-14 for a, b in zip(gaps, bounds))
        worst = max(a / b for a, b in zip(gaps, bounds))
        from blobench.measure.metrics import fit_geometric_rate

        rate = fit_geometric_rate(Ds, gaps)
        return Verdict(ok, f"max gap / bound = {worst:.3g}; fitted rate {rate:.4f}",
                       f"gap <= bound for all D; rate 1 - 1/sqrt(kappa_y) = {q:.4f} (GD: {1 - mu / L:.4f})",
                       {"D": Ds, "gaps": gaps, "bounds": bounds, "fitted_rate": rate, "momentum": m,
                        "grad_y_g_calls": o.counts["grad_y_g"]})


def _span_steps(H: np.ndarray, b: np.ndarray, eps: float) -> int:
    """Smallest k such that the best point of span(e_1..e_k) is within relative squared distance eps of
    x* = H^{-1} b: the zero-respecting bound on calls to reach ||x - x*||^2 <= eps ||x*||^2."""
    xs = np.linalg.solve(H, b)
    tail = np.cumsum((xs**2)[::-1])[::-1] / float(xs @ xs)  # tail[k] = sum_{i > k} x*_i^2 (0-based)
    hit = np.nonzero(tail <= eps)[0]
    return int(hit[0]) if hit.size else len(b)


@harness.register_claim("jl-bilevel-harder-than-minimax")
class BilevelHarderThanMinimax(Claim):
    citation = CITE + ", abstract: bilevel lower bounds exceed minimax's optimal complexity (1/(sqrt(mu_x) mu_y) vs 1/sqrt(mu_x mu_y))"
    statement = ("On the chain instance (mu_x = 0.1, L = 1) the zero-respecting bound on calls to reach ||x - x*||^2 <= "
                 "1e-4 ||x*||^2 grows as mu_y^-1 for the bilevel problem and as mu_y^-1/2 for its minimax twin with the "
                 "same A, B and x-terms (min_x max_y mu_x/2||x||^2 - b x_1 + y'Bx - 1/2 y'Ay): fitted exponents in "
                 "1/mu_y within 0.15 of 1 and of 0.5, and the bilevel one larger by at least 0.3. The theorem's own "
                 "quantity (the span bound, computed exactly); no method is run.")
    control = ("the mechanism removed: the bilevel instance with f's y-curvature set to the inner Hessian (f_yy = A "
               "instead of I), so that Phi's Hessian carries A^-1 like the minimax problem instead of A^-2")

    def evaluate(self, size: str, control: bool) -> Verdict:
        from blobench.problems.lb_scsc import chain_matrices

        mu_x, eps = 0.1, 1e-4
        mus = [0.2, 0.1, 0.05, 0.025] if size == "ci" else [0.2, 0.1, 0.05, 0.025, 0.0125]
        n = 800 if size == "ci" else 1600
        b = np.zeros(n)
        b[0] = 1.0
        bil, mm = [], []
        for mu_y in mus:
            A, B = chain_matrices(n, mu_y, 1.0)
            M = np.linalg.solve(A, B)  # dy*/dx
            H_bilevel = mu_x * np.eye(n) + (M.T @ A @ M if control else M.T @ M)
            H_minimax = mu_x * np.eye(n) + B.T @ M  # Schur complement of the saddle point's Hessian
            bil.append(_span_steps(H_bilevel, b, eps))
            mm.append(_span_steps(H_minimax, b, eps))
        inv = [1 / m for m in mus]
        fb, fm = fit_exponent(inv, bil), fit_exponent(inv, mm)
        saturated = max(bil) >= n
        ok = (not saturated and abs(fb["slope"] - 1) <= 0.15 and abs(fm["slope"] - 0.5) <= 0.15
              and fb["slope"] - fm["slope"] >= 0.3)
        return Verdict(ok, f"bilevel exponent {fb['slope']:.3f} [{fb['lo']:.3f}, {fb['hi']:.3f}], minimax "
                       f"{fm['slope']:.3f} [{fm['lo']:.3f}, {fm['hi']:.3f}]; calls bilevel {bil}, minimax {mm}",
                       "bilevel ~1, minimax ~0.5 (within 0.15), difference >= 0.3",
                       {"mu_y": mus, "bilevel_calls": bil, "minimax_calls": mm, "fit_bilevel": fb, "fit_minimax": fm,
                        "dim": n, "eps": eps})


@harness.register_claim("jl-bilevel-harder-than-minimax-measured")
class BilevelHarderThanMinimaxMeasured(Claim):
    citation = CITE + ", abstract: bilevel is provably harder than minimax (1/(sqrt(mu_x) mu_y) vs 1/sqrt(mu_x mu_y))"
    statement = ("Measured, not computed: AccBiO (harness theory budgets x 2, outer Nesterov) run through the outer loop on "
                 "the chain instance lb-scsc and on its minimax twin lb-scsc-minimax (same A, B, mu_x = 0.2, b; f = x-terms "
                 "+ y'Bx - 1/2 y'Ay) to Phi - Phi* <= 1e-4 over mu_y in [0.025, 0.2]: the fitted exponent of counted oracle "
                 "calls in 1/mu_y is larger on the bilevel instance by at least 0.3 (95% interval of the difference above "
                 "0; the bounds' exponents are 1 and 0.5 asymptotically), and every run uses at least its instance's exact "
                 "zero-respecting span bound.")
    control = ("the mechanism removed: the 'bilevel' runs made on the twin's form='bilevel' (a bilevel problem with f_yy = A, "
               "so Phi's Hessian carries A^-1 like the minimax problem instead of lb-scsc's A^-2)")

    def evaluate(self, size: str, control: bool) -> Verdict:
        mu_x, eps = 0.2, 1e-4
        mus, dim = ([0.2, 0.1, 0.05, 0.025], 600) if size == "ci" else ([0.2, 0.1, 0.05, 0.025, 0.0125], 1200)
        runs: dict[str, dict[str, list]] = {}
        for which in ("bilevel", "minimax"):
            calls, lbs = [], []
            for mu_y in mus:
                if which == "minimax":
                    p = harness.problem("lb-scsc-minimax", dim=dim, mu_x=mu_x, mu_y=mu_y, form="saddle")
                elif control:
                    p = harness.problem("lb-scsc-minimax", dim=dim, mu_x=mu_x, mu_y=mu_y, form="bilevel")
                else:
                    p = harness.problem("lb-scsc", dim=dim, mu_x=mu_x, mu_y=mu_y)
                calls.append(_calls(p, _method(p, "accbio"), eps, "nesterov"))
                lbs.append(float(p.calls_lower_bound(eps)))
            runs[which] = {"calls": calls, "lower_bound": lbs}
        inv = [1 / m for m in mus]
        if not all(np.isfinite(runs[w]["calls"]).all() for w in runs):
            return Verdict(False, f"a run did not reach eps: {runs}", "every run reaches eps", {"runs": runs, "mu_y": mus})
        fb, fm = fit_exponent(inv, runs["bilevel"]["calls"]), fit_exponent(inv, runs["minimax"]["calls"])
        lb_b, lb_m = fit_exponent(inv, runs["bilevel"]["lower_bound"]), fit_exponent(inv, runs["minimax"]["lower_bound"])
        d, lo, hi = _diff_interval(fb, fm)
        above = all(c >= lb for w in runs for c, lb in zip(runs[w]["calls"], runs[w]["lower_bound"]))
        ok = d >= 0.3 and lo > 0 and above
        return Verdict(ok, f"AccBiO exponent bilevel {fb['slope']:.3f} [{fb['lo']:.3f}, {fb['hi']:.3f}], minimax {fm['slope']:.3f} "
                       f"[{fm['lo']:.3f}, {fm['hi']:.3f}], difference {d:.3f} [{lo:.3f}, {hi:.3f}] (span bounds' exponents "
                       f"{lb_b['slope']:.3f} and {lb_m['slope']:.3f}); calls bilevel {runs['bilevel']['calls']}, minimax "
                       f"{runs['minimax']['calls']}", "difference >= 0.3 with interval above 0, calls >= bound",
                       {"mu_y": mus, "mu_x": mu_x, "eps": eps, "dim": dim, "runs": runs, "fit_bilevel": fb, "fit_minimax": fm,
                        "fit_lower_bound_bilevel": lb_b, "fit_lower_bound_minimax": lb_m, "difference": [d, lo, hi]})


# ----------------------------------------------------------------------------- mutations

def _patch_outer_momentum_dropped() -> contextlib.AbstractContextManager:
    import blobench.measure.outer as outer

    return mock.patch.object(outer, "outer_momentum", lambda *a, **k: (False, None))


def _patch_chain_leak() -> contextlib.AbstractContextManager:
    import blobench.problems.lb_scsc as lb

    orig = lb.chain_matrices

    def leaky(n: int, mu_y: float, L: float):
        A, B = orig(n, mu_y, L)
        return A + 1e-3 * np.ones((n, n)), B  # a dense coupling: still SPD, no longer a chain

    return mock.patch.object(lb, "chain_matrices", leaky)


def _patch_agd_momentum_dropped() -> contextlib.AbstractContextManager:
    import blobench.core.numerics as numerics

    return mock.patch.object(numerics, "agd_momentum", lambda momentum, k: 0.0)


def _patch_uncounted_oracles() -> contextlib.AbstractContextManager:
    return mock.patch.object(Oracles, "_count", lambda self, name, k=1: None)


def _patch_hide_third_of_calls() -> contextlib.AbstractContextManager:
    """Every third oracle call goes uncounted (an oracle layer that under-reports by a third)."""
    orig = Oracles._count

    def _count(self, name: str, k: int = 1) -> None:
        n = getattr(self, "_hidden_n", 0)
        kept = sum(1 for j in range(n + 1, n + k + 1) if j % 3)
        self._hidden_n = n + k
        orig(self, name, kept)

    return mock.patch.object(Oracles, "_count", _count)


def _patch_heavy_ball_momentum_dropped() -> contextlib.AbstractContextManager:
    import blobench.estimators.accbio as accbio

    orig = accbio.heavy_ball
    return mock.patch.object(accbio, "heavy_ball", lambda matvec, b, steps, lr, theta: orig(matvec, b, steps, lr, 0.0))


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], contextlib.AbstractContextManager]]] = [
    ("outer-nesterov-momentum-dropped", ("jl-accbio-kappa-improvement", "jl-accbio-matches-lower-bound"),
     _patch_outer_momentum_dropped),
    ("chain-instance-dense-leak", ("jl-zero-respecting-span",), _patch_chain_leak),
    ("agd-momentum-dropped", ("jl-agd-inner-rate",), _patch_agd_momentum_dropped),
    ("oracle-counting-bypassed", ("jl-lower-bound-respected", "jl-bilevel-harder-than-minimax-measured"), _patch_uncounted_oracles),
    ("hide-a-third-of-oracle-calls", ("jl-lower-bound-respected",), _patch_hide_third_of_calls),
    # on the paper's own instances (issue 24)
    ("jl-outer-nesterov-momentum-dropped", ("jl-scsc-accbio-matches-kappa-x",), _patch_outer_momentum_dropped),
    ("jl-oracle-counting-bypassed", ("jl-csc-theorem6", "jl-scsc-bound-respected"), _patch_uncounted_oracles),
    ("accbio-alg1-heavy-ball-momentum-dropped", ("jl-scsc-accbio-matches-kappa-y",), _patch_heavy_ball_momentum_dropped),
]


# ============================================================================= the paper's own instances (issue 24)
#
# jl-scsc (eq. 15-16, Theorem 4) and jl-csc (eq. 20-21, Theorem 6): blobench/problems/jl_scsc.py, jl_csc.py. AccBiO as
# Algorithm 1 with Theorem 9's parameters: estimator "accbio-alg1". Exponents are fitted in 1/mu_x (kappa_x
# direction, every L = 1) and 1/mu_y (= kappa_y), the parameters the theorems are stated in; the instance's exact
# kappa_x = L_Phi/mu_Phi is reported beside them.

JL_CITE = ("Ji & Liang, JMLR 24(22) (2023), read from the JMLR PDF (JmlrOrg/v24 21-0949): Theorem 4 and eq. (15)-(16), "
           "Lemma 15, Algorithm 1 and Theorem 9, Corollary 10")
_JL_TOL = 1e-3  # steps_tol of accbio-alg1 in these claims: N = M = ceil(sqrt(kappa_y) ln 1e3) (the log factor is a constant)


def _alg1(rule: str = "sqrt") -> harness.Estimator:
    return harness.estimator("accbio-alg1", steps_rule=rule, steps_tol=_JL_TOL)


_JL_MEMO = memo()


def _jl_sweep(axis: str, size: str, which: str) -> dict[str, Any]:
    """Calls of accbio-alg1 ("sqrt", "linear" rule, or "sqrt-no-momentum") to Phi - Phi* <= eps on jl-scsc along
    ``axis`` ("kappa_y": mu_x = 0.05, mu_y swept; "kappa_x": mu_y = 0.1, mu_x swept), beside the exact per-instance
    bound and Theorem 4's bound with the proof's constants; cached (the claim and its control share the bound)."""
    key = (axis, size, which)
    if key in _JL_MEMO:
        return _JL_MEMO[key]
    eps = 1e-4 if size == "ci" else 1e-6
    if axis == "kappa_y":
        grid = [0.2, 0.1, 0.05] if size == "ci" else [0.2, 0.1, 0.05, 0.025]
        dim = 500 if size == "ci" else 1600
        kws = [dict(mu_x=0.05, mu_y=m) for m in grid]
    else:
        grid = [0.04, 0.02, 0.01, 0.005] if size == "ci" else [0.04, 0.02, 0.01, 0.005, 0.0025]
        dim = 800 if size == "ci" else 1600
        kws = [dict(mu_x=m, mu_y=0.1) for m in grid]
    rows = []
    for kw in kws:
        p = harness.problem("jl-scsc", dim=dim, **kw)
        rule = "linear" if which == "linear" else "sqrt"
        mom = "none" if which == "sqrt-no-momentum" else "nesterov"
        c = p.constants
        max_steps = 150 if axis == "kappa_x" else 20000
        calls = _calls(p, _alg1(rule), eps, mom, max_steps=max_steps)
        cor10 = math.sqrt(p.L_y * p.Lt_xy**2 * c["L"] / (p.mu_x * p.mu_y**3))
        rows.append({**kw, "kappa_x_exact": c["kappa_x"], "kappa_y": c["kappa_y"], "calls": calls,
                     "lower_bound": p.calls_lower_bound(eps), "theorem4": p.theorem4_calls(eps),
                     "eq40_ok": p.dim_required(p.support_needed(eps)) <= dim,
                     "unsaturated": 2 * p.support_needed(eps) <= dim, "corollary10_order": cor10,
                     "theorem4_order": p.theorem4_order()})
    inv = [1 / r["mu_y" if axis == "kappa_y" else "mu_x"] for r in rows]
    out = {"axis": axis, "eps": eps, "dim": dim, "rows": rows, "x": inv,
           "fit": fit_exponent(inv, [r["calls"] for r in rows]),
           "fit_lb": fit_exponent(inv, [r["lower_bound"] for r in rows]),
           "fit_thm4": fit_exponent(inv, [r["theorem4"] for r in rows]),
           "fit_cor10": fit_exponent(inv, [r["corollary10_order"] for r in rows])}
    _JL_MEMO[key] = out
    return out


def _fit_txt(f: dict) -> str:
    return f"{f['slope']:.3f} [{f['lo']:.3f}, {f['hi']:.3f}]"


# ----------------------------------------------------------------------------- per-call span bound, independent count

class _LinCount:
    """A :class:`Linearization` whose products the independent counter sees (each one call, logged at its inputs)."""

    def __init__(self, lin, owner: "_IndependentCountOracles", x, y):
        self._lin, self._own, self._x, self._y = lin, owner, x, y
        self.value = lin.value

    def hv(self, v):
        self._own._see(1, self._x, self._y, v)
        return self._lin.hv(v)

    def jv(self, v):
        self._own._see(1, self._x, self._y, v)
        return self._lin.jv(v)

    def hv_jv(self, v):
        self._own._see(2, self._x, self._y, v)
        return self._lin.hv_jv(v)


class _IndependentCountOracles(Oracles):
    """Oracles with a counter of their own: every public oracle method (and every product of a linearisation) adds
    its calls to ``independent`` when it is entered, independently of :meth:`Oracles._count` (which is what the
    harness's figures are made of: ``reported``, accumulated across the outer loop's per-step resets). Each call
    logs (independent calls before it, reported calls before it, chain depth of its inputs): the depth of the
    x-arguments is their largest nonzero index, that of y-space vectors (y, v) the largest nonzero index of Z y (b is
    dense, Z b is supported on {1, 2}: jl-scsc's chain runs through y in Z's coordinates, y*(x) = A^{-1}((Lt_xy/2)Zx - b)
    with Z commuting with A)."""

    def __init__(self, problem):
        super().__init__(problem)
        self.independent = 0
        self._reported_before_reset = 0
        self.log: list[tuple[int, int, int]] = []

    def reset(self) -> None:
        self._reported_before_reset += sum(self.counts.values())
        super().reset()

    @property
    def reported(self) -> int:
        return self._reported_before_reset + sum(self.counts.values())

    def _depth(self, x, *ys) -> int:
        from blobench.problems.jl_scsc import z_apply

        return max([self.problem.chain_depth(x)] + [self.problem.chain_depth(z_apply(v.detach())) for v in ys])

    def _see(self, k: int, x, *ys) -> None:
        self.log.append((self.independent, self.reported, self._depth(x, *ys)))
        self.independent += k

    def grad_x_f(self, x, y, batch=None):
        self._see(1, x, y)
        return super().grad_x_f(x, y, batch)

    def grad_y_f(self, x, y, batch=None):
        self._see(1, x, y)
        return super().grad_y_f(x, y, batch)

    def grad_f(self, x, y, batch=None):
        self._see(2, x, y)
        return super().grad_f(x, y, batch)

    def grad_y_g(self, x, y, batch=None):
        self._see(1, x, y)
        return super().grad_y_g(x, y, batch)

    def grad_x_g(self, x, y, batch=None):
        self._see(1, x, y)
        return super().grad_x_g(x, y, batch)

    def grad_g(self, x, y, batch=None):
        self._see(2, x, y)
        return super().grad_g(x, y, batch)

    def hvp(self, x, y, v, batch=None):
        self._see(1, x, y, v)
        return super().hvp(x, y, v, batch)

    def jvp(self, x, y, v, batch=None):
        self._see(1, x, y, v)
        return super().jvp(x, y, v, batch)

    def hvp_jvp(self, x, y, v, batch=None):
        self._see(2, x, y, v)
        return super().hvp_jvp(x, y, v, batch)

    def f_value(self, x, y, batch=None):
        self._see(1, x, y)
        return super().f_value(x, y, batch)

    def g_value(self, x, y, batch=None):
        self._see(1, x, y)
        return super().g_value(x, y, batch)

    def linearize(self, x, y, batch=None, value=False, joint=False):
        if value:
            self._see(1, x, y)
        return _LinCount(super().linearize(x, y, batch, value, joint), self, x, y)

    def exact(self, x):
        self._see(1, x)
        return super().exact(x)


@harness.register_claim("jl-lower-bound-respected")
class LowerBoundRespected(Claim):
    citation = JL_CITE + "; the span argument of Theorem 4's proof, Steps 3-4 (H_x^K in span{Z^{2j}(Zb)}, M = K + QT + Q + 2)"
    statement = ("On Ji & Liang's SC-SC instance jl-scsc (d = 120, mu_x = 0.05, mu_y = 0.1, every L = 1), for every "
                 "registered zero-respecting method (AID-CG/NS/FP warm-started, ITD with AGD, accbio, accbio-alg1, F2BA, "
                 "F2BA+, AccF2BA+, F2SA, BOME, HOAG; 4 outer steps at ci) and at every single oracle call, the chain depth "
                 "of the call's inputs (largest nonzero index of x and of Z y, Z v) is at most the calls the harness "
                 "counted before it + 2: the exact zero-respecting bound, per call, against the reported count. The "
                 "bound is checked against an independent count kept by a wrapper around every oracle method (it must "
                 "hold there too, and be attained within one call by some method, so that the check is sharp: under-"
                 "counting by a third puts the depth up to ~10 calls above the reported count).")
    control = ("a method that reads y*(x) from the problem object (an uncounted, dense solve) and then calls grad_f at "
               "it: its inputs are at the chain's end after 0 counted calls")
    METHODS = (("aid-cg", {"warm_start": True}, "none"), ("aid-neumann", {"warm_start": True}, "none"),
               ("aid-fp", {"warm_start": True}, "none"), ("itd", {"inner_steps": 20, "inner_solver": "agd"}, "none"),
               ("accbio", {}, "nesterov"), ("accbio-alg1", None, "nesterov"), ("f2ba", {}, "none"),
               ("f2ba-plus", {}, "none"), ("accf2ba-plus", {}, "none"), ("f2sa", {}, "none"), ("bome", {}, "none"),
               ("hoag", {}, "none"))

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("jl-scsc", dim=120 if size == "ci" else 400, mu_x=0.05, mu_y=0.1)
        steps = 4 if size == "ci" else 20
        off = p.support_offset
        listed = [("cheat", None, "none")] if control else [m for m in self.METHODS if m[0] in harness.estimators()]
        rows, ok, sharp = {}, True, False
        for name, kw, mom in listed:
            est = (_YStarCheat() if control else _alg1() if kw is None else _method(p, name, **kw))
            o = _IndependentCountOracles(p)
            lr = 0.05 if name == "bome" else 1 / p.constants["L_phi"]
            outer_loop(p, est, steps, lr, momentum=mom, oracles=o)
            over_rep = max(d - r for _, r, d in o.log)
            over_ind = max(d - i for i, _, d in o.log)
            ok &= over_rep <= off and over_ind <= off
            sharp |= over_ind >= off - 1
            first = {}
            for i, r, d in o.log:
                first.setdefault(d, (i, r))
            rows[name] = {"independent_calls": o.independent, "reported_calls": o.reported, "depth_reached": max(first),
                          "max_depth_minus_reported": over_rep, "max_depth_minus_independent": over_ind,
                          "calls_at_depth": {int(k): list(v) for k, v in sorted(first.items())}}
        ok = ok and (sharp or control)
        return Verdict(ok, "max over calls of (input depth - calls counted before it): " + ", ".join(
            f"{k} {v['max_depth_minus_reported']}" + ("" if v["reported_calls"] == v["independent_calls"] else
                                                       f" (independent count {v['max_depth_minus_independent']})")
            for k, v in rows.items()) + "; depth reached / calls: " + ", ".join(
            f"{k} {v['depth_reached']}/{v['independent_calls']}" for k, v in rows.items()),
                       f"<= {off} (the bound's offset) against both counts, attained within one call by some method",
                       {"runs": rows, "offset": off, "dim": p.dim_x, "steps": steps})


class _YStarCheat(harness.Estimator):
    """Negative control (not registered): y = y*(x) read from the problem (uncounted), then one counted grad_f."""

    name = "cheat-ystar"

    def estimate(self, oracles, x, noise, state=None):
        gx, _ = oracles.grad_f(x, oracles.problem.inner_solution(x))
        return harness.Estimate(gx)


@harness.register_claim("jl-scsc-bound-respected")
class JLSCSCBoundRespected(Claim):
    citation = JL_CITE + "; the bound's Steps 3-4 (x^K supported on its first M = K + QT + Q + 2 coordinates)"
    statement = ("On Ji & Liang's own SC-SC instance jl-scsc (d = 300, mu_x = 0.05, mu_y = 0.1, every L = 1) every registered "
                 "zero-respecting method run to Phi - Phi* <= eps (AID-BiO: aid-cg warm-started, outer GD; ITD-BiO with AGD "
                 "inner steps; accbio; accbio-alg1, Algorithm 1) uses at least the instance's exact span bound "
                 "min{k : gap(k) <= eps} - 2 counted oracle calls, and at least Theorem 4's bound with the proof's "
                 "constants, at every eps.")
    control = ("a cheat that reads grad Phi from the problem object (uncounted, not zero-respecting): its counted calls "
               "fall below the bound")
    METHODS = (("aid-cg", {"warm_start": True}), ("itd", {"inner_steps": 20, "inner_solver": "agd"}), ("accbio", {}),
               ("accbio-alg1", {}))

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("jl-scsc", dim=300 if size == "ci" else 600, mu_x=0.05, mu_y=0.1)
        eps_list = [1e-2, 1e-4] if size == "ci" else [1e-2, 1e-4, 1e-6, 1e-8]
        lbs = {e: p.calls_lower_bound(e) for e in eps_list}
        t4 = {e: p.theorem4_calls(e) for e in eps_list}
        rows, ok = [], True
        methods = [("cheat", None)] if control else list(self.METHODS)
        for name, kw in methods:
            est = _Cheat("hypergradient") if control else (_alg1() if name == "accbio-alg1" else _method(p, name, **kw))
            res = calls_to_target(p, est, eps_list, max_steps=1500 if size == "ci" else 6000)
            for e in eps_list:
                h = res["by_eps"][e]
                calls = None if h is None else h["total"]
                ok &= calls is not None and calls >= max(lbs[e], t4[e])
                rows.append({"method": name, **(kw or {}), "eps": e, "calls": calls, "lower_bound": lbs[e],
                             "theorem4": t4[e]})
        ratios = [r["calls"] / r["lower_bound"] for r in rows if r["calls"] is not None and r["lower_bound"] > 0]
        return Verdict(ok, f"min calls / exact bound = {min(ratios) if ratios else float('nan'):.3g}; "
                       + "; ".join(f"{r['method']} eps={r['eps']:g}: {r['calls']}" for r in rows),
                       "every run reaches eps with calls >= max(exact bound, Theorem 4); bounds: "
                       + ", ".join(f"eps={e:g}: {lbs[e]} (Thm 4: {t4[e]})" for e in eps_list),
                       {"runs": rows, "instance": dict(p.p), "constants": p.constants})


@harness.register_claim("jl-scsc-accbio-matches-kappa-y")
class JLAccBiOKappaY(Claim):
    citation = JL_CITE
    statement = ("On jl-scsc (mu_x = 0.05, mu_y swept, d >= twice the support the bound needs), AccBiO as Algorithm 1 with N = M = "
                 "ceil(sqrt(kappa_y) ln 1e3) (the proof's rule) needs oracle calls to Phi - Phi* <= eps growing in kappa_y = "
                 "1/mu_y with a fitted exponent within 0.2 of the exact per-instance lower bound's, which is within 0.25 "
                 "of Theorem 4's 1 (Omega(sqrt(L_y Lt_xy^2/(mu_x mu_y^2)) log)); and never below the bound. The measured "
                 "exponents are also compared with Corollary 10's 1.5 (its L_Phi is the nominal L_y Lt_xy^2/mu_y^2; this "
                 "instance's exact L_Phi grows like 1/mu_y).")
    control = "N = M = ceil(kappa_y ln 1e3), Theorem 9's rule as printed (Theta~(kappa_y)): a further sqrt(kappa_y) per outer step"
    TOL = 0.2

    def evaluate(self, size: str, control: bool) -> Verdict:
        s = _jl_sweep("kappa_y", size, "linear" if control else "sqrt")
        above = all(r["calls"] >= r["lower_bound"] for r in s["rows"])
        gap = s["fit"]["slope"] - s["fit_lb"]["slope"]
        ok = (above and abs(gap) <= self.TOL and abs(s["fit_lb"]["slope"] - 1.0) <= 0.25
              and all(r["unsaturated"] for r in s["rows"]))
        return Verdict(ok, f"AccBiO (Alg. 1, {'linear' if control else 'sqrt'} rule) exponent {_fit_txt(s['fit'])}, exact bound "
                       f"{_fit_txt(s['fit_lb'])}, Theorem 4 with constants {_fit_txt(s['fit_thm4'])}, Corollary 10 "
                       f"{s['fit_cor10']['slope']:.2f}; calls {[r['calls'] for r in s['rows']]}, bound "
                       f"{[r['lower_bound'] for r in s['rows']]}",
                       f"|AccBiO - bound| <= {self.TOL}, bound within 0.25 of 1, calls >= bound", s,
                       rates=[{"name": "accbio-alg1 kappa_y exponent", "rate": s["fit"]["slope"], "rate_lo": s["fit"]["lo"],
                               "rate_hi": s["fit"]["hi"], "rate_bound": s["fit_cor10"]["slope"],
                               "rate_violation": bool(s["fit"]["lo"] > s["fit_cor10"]["slope"])}])


@harness.register_claim("jl-scsc-accbio-matches-kappa-x")
class JLAccBiOKappaX(Claim):
    citation = JL_CITE
    statement = ("On jl-scsc (mu_y = 0.1, mu_x swept, d >= twice the support the bound needs; eq. (40)'s d is reported, not required: the exact bound does not use it), AccBiO as Algorithm 1 (sqrt rule, outer Nesterov "
                 "with (sqrt(kappa_x) - 1)/(sqrt(kappa_x) + 1)) reaches Phi - Phi* <= eps within 150 outer iterations with "
                 "oracle calls growing in 1/mu_x with a fitted exponent within 0.15 of 0.5 (Theorem 4's and Corollary 10's "
                 "sqrt(kappa_x)) and within 0.15 of the exact per-instance bound's exponent, never below the bound.")
    control = ("AccBiO with its outer Nesterov momentum dropped (plain steps 1/L_Phi): kappa_x log(1/eps) outer iterations, "
               "beyond the 150 within which the accelerated method reaches eps on this grid (it needs at most ~110)")
    TOL = 0.15

    def evaluate(self, size: str, control: bool) -> Verdict:
        s = _jl_sweep("kappa_x", size, "sqrt-no-momentum" if control else "sqrt")
        calls = [r["calls"] for r in s["rows"]]
        finite = all(np.isfinite(calls))
        above = finite and all(r["calls"] >= r["lower_bound"] for r in s["rows"])
        ok = (above and abs(s["fit"]["slope"] - 0.5) <= self.TOL and abs(s["fit"]["slope"] - s["fit_lb"]["slope"]) <= self.TOL
              and all(r["unsaturated"] for r in s["rows"]))
        return Verdict(ok, f"AccBiO (Alg. 1) exponent in 1/mu_x {_fit_txt(s['fit'])}, exact bound {_fit_txt(s['fit_lb'])}, "
                       f"Theorem 4 with constants {_fit_txt(s['fit_thm4'])}; calls {calls} (nan: not within 150 outer "
                       f"iterations), bound {[r['lower_bound'] for r in s['rows']]}",
                       f"every run reaches eps; exponent within {self.TOL} of 0.5 and of the bound's; calls >= bound", s)


@harness.register_claim("jl-scsc-z3-ablation")
class JLZ3Ablation(Claim):
    citation = JL_CITE + "; the remark after Theorem 4 (p. 13): without the Z^3 term the bound only reaches Omega(L_y Lt_xy/(mu_x mu_y))"
    statement = ("Dropping the Z^3 term of f (same b, d, constants) weakens the instance: its exact per-instance span "
                 "bound on calls to Phi - Phi* <= eps is at most 0.7 times the full instance's at the hardest grid point, or "
                 "its fitted exponent in 1/mu_y is smaller by at least 0.2 (mu_x = 0.05, mu_y swept, d = 1200).")
    expected = "not reproduced"
    evidence_note = ("exact span bounds at eps = 1e-6, d = 800, mu_x = 0.05, mu_y = 0.2, 0.1, 0.05: 73, 153, 322 calls with "
                     "and without Z^3 alike (gaps differ by < 1%); the Z^3 term makes eq. (33) a quartic so that Lemma 15 "
                     "has a closed form, it is not a source of hardness (docs/lower_bounds.md)")
    control = "the 'ablated' instance replaced by the full one (nothing dropped): no weakening can be seen"
    positive_control = "the 'ablated' instance replaced by the full one at twice mu_y (a provably easier instance): the rule must hold"

    def _rule(self, size: str, variant: str) -> Verdict:
        eps = 1e-6
        grid = [0.2, 0.1, 0.05] if size == "ci" else [0.2, 0.1, 0.05, 0.025]
        dim = 800 if size == "ci" else 1600

        def bound(mu_y: float, z3: bool = True) -> int:
            key = ("z3-bound", dim, mu_y, z3, eps)
            if key not in _JL_MEMO:
                _JL_MEMO[key] = harness.problem("jl-scsc", dim=dim, mu_x=0.05, mu_y=mu_y, z3=z3).calls_lower_bound(eps)
            return _JL_MEMO[key]

        full = [bound(my) for my in grid]
        other = [bound(my, False) if variant == "ablated" else bound(my) if variant == "same" else bound(2 * my)
                 for my in grid]
        inv = [1 / m for m in grid]
        ff, fo = fit_exponent(inv, full), fit_exponent(inv, other)
        ratio = other[-1] / full[-1]
        holds = ratio <= 0.7 or ff["slope"] - fo["slope"] >= 0.2
        return Verdict(holds, f"exact bound with Z^3 {full} (exponent {_fit_txt(ff)}), {variant} {other} (exponent "
                       f"{_fit_txt(fo)}); ratio at mu_y = {grid[-1]}: {ratio:.3f}",
                       "ratio <= 0.7 or exponent drop >= 0.2",
                       {"mu_y": grid, "full": full, variant: other, "fit_full": ff, "fit_other": fo, "eps": eps, "dim": dim})

    def evaluate(self, size: str, control: bool) -> Verdict:
        return self._rule(size, "same" if control else "ablated")

    def evaluate_positive(self, size: str) -> Verdict:
        return self._rule(size, "easier")


@harness.register_claim("jl-csc-theorem6")
class JLCSCTheorem6(Claim):
    citation = ("Ji & Liang, JMLR 24(22) (2023): Theorem 6, eq. (19)-(22), Corollary 7 and the instance eq. (20)-(21) "
                "with b from eq. (51)")
    statement = ("On Ji & Liang's C-SC instance jl-csc with the theorem's dimension d = floor(r*(eps)) of eq. (19) (mu_y = 0.1, "
                 "B = 1, every L = 1), for eps in a grid on ||grad Phi||: the gradient floor of eq. (22) is >= eps^2; no x "
                 "supported on fewer than d - 2 coordinates has ||grad Phi(x)|| <= eps (exact least squares); the exact "
                 "bound's exponent in 1/eps is within 0.15 of Corollary 7's 1/2; and AID-BiO (aid-cg, outer GD) and AccBiO "
                 "(Algorithm 1) reach ||grad Phi||^2 <= eps^2 using at least the exact per-instance bound of calls.")
    control = "the instance built with three times the theorem's dimension (d = 3 floor(r*)), so the chain's end is out of reach"

    def evaluate(self, size: str, control: bool) -> Verdict:
        from blobench.problems.jl_csc import r_star

        grid = [0.1, 0.0316, 0.01] if size == "ci" else [0.1, 0.0316, 0.01, 0.00316]
        rows, ok = [], True
        for e in grid:
            beta = (1.0 - 0.1) / 4
            rs = r_star(e, 1.0, 0.1, beta, 1.0, 1.0, 1.0)
            d = max(4, int(rs)) * (3 if control else 1)
            p = harness.problem("jl-csc", dim=d, mu_y=0.1)
            floor_ok = p.gradient_floor() >= e * e
            need = p.support_needed(e * e)
            lb = p.calls_lower_bound(e * e)
            runs = {}
            for name, est in (("aid-cg", _method(p, "aid-cg", warm_start=True)), ("accbio-alg1", _alg1())):
                runs[name] = _calls(p, est, e * e, "auto", max_steps=4000)
            ok &= floor_ok and need >= d - 2 and all(np.isfinite(c) and c >= lb for c in runs.values())
            rows.append({"eps": e, "r_star": rs, "dim": d, "floor": p.gradient_floor(), "floor_ok": floor_ok,
                         "support_needed": need, "lower_bound": lb, "calls": runs})
        fit = fit_exponent([1 / r["eps"] for r in rows], [r["support_needed"] for r in rows])
        ok = ok and abs(fit["slope"] - 0.5) <= 0.15
        return Verdict(ok, f"support needed {[r['support_needed'] for r in rows]} on d = {[r['dim'] for r in rows]} "
                       f"(exponent in 1/eps {_fit_txt(fit)}); floor >= eps^2: {[r['floor_ok'] for r in rows]}; calls "
                       + "; ".join(f"eps={r['eps']:g}: " + ", ".join(f"{k} {v:.0f}" for k, v in r['calls'].items())
                                   + f" (bound {r['lower_bound']})" for r in rows),
                       "floor >= eps^2, support >= d - 2, exponent within 0.15 of 0.5, calls >= bound",
                       {"rows": rows, "fit": fit})


def exponent_table(eps: float = 1e-4, dim: int = 800) -> list[dict[str, Any]]:
    """The docs' table (docs/lower_bounds.md): calls to Phi - Phi* <= eps on jl-scsc of AID-BiO (aid-cg, warm start,
    outer GD), accbio (the old composition) and accbio-alg1
    (Algorithm 1, sqrt and linear rules), along kappa_y (mu_x = 0.05) and kappa_x (mu_y = 0.1), with the exact bound,
    Theorem 4's with constants and each column's fitted exponent. ``python -m blobench.claims.ji_liang2023``."""
    axes = {"kappa_y": [dict(mu_x=0.05, mu_y=m) for m in (0.2, 0.1, 0.05)],
            "kappa_x": [dict(mu_x=m, mu_y=0.1) for m in (0.04, 0.02, 0.01)]}
    out = []
    for axis, kws in axes.items():
        cols: dict[str, list[float]] = {}
        for kw in kws:
            p = harness.problem("jl-scsc", dim=dim, **kw)
            runs = {"AID-BiO (aid-cg)": (_method(p, "aid-cg", warm_start=True), "none"),
                    "accbio (old)": (_method(p, "accbio"), "nesterov"),
                    "accbio-alg1 sqrt": (_alg1("sqrt"), "nesterov"), "accbio-alg1 linear": (_alg1("linear"), "nesterov")}
            for name, (est, mom) in runs.items():
                cols.setdefault(name, []).append(_calls(p, est, eps, mom, max_steps=40000))
                print(axis, kw, name, cols[name][-1], flush=True)
            cols.setdefault("exact bound", []).append(float(p.calls_lower_bound(eps)))
            cols.setdefault("Theorem 4 (constants)", []).append(float(p.theorem4_calls(eps)))
            cols.setdefault("kappa_x exact", []).append(p.constants["kappa_x"])
        inv = [1 / kw["mu_y" if axis == "kappa_y" else "mu_x"] for kw in kws]
        for name, v in cols.items():
            out.append({"axis": axis, "column": name, "values": v,
                        "exponent": fit_exponent(inv, v)})
    return out


if __name__ == "__main__":  # pragma: no cover - the docs' table
    for r in exponent_table():
        f = r["exponent"]
        print(f"{r['axis']:8s} {r['column']:24s} {[round(v, 1) for v in r['values']]}  exponent {f['slope']:.2f} "
              f"[{f['lo']:.2f}, {f['hi']:.2f}]")
