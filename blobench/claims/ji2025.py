"""Ji 2025's nonconvex-strongly-convex lower bound as executable claims, on the paper's own instance ``ji-ncsc``.

Source: K. Ji, "Lower Complexity Bounds for Nonconvex-Strongly-Convex Bilevel Optimization with First-Order Oracles",
arXiv 2511.19656 v2, Theorem 1, eq. (6)-(8) and Definition 4 (zero-respecting first-order bilevel methods). The
instance and its constants are in blobench/problems/ji_ncsc.py.

Issue 24's items: (a) ``ji-ncsc-zero-chain``, the exact count; (b) ``ji-ncsc-calls-kappa-eps``, the kappa^{3/2} eps^{-2}
exponents of calls to ||grad H|| <= eps on the instance built per (eps, kappa) as Theorem 1's proof does; (c) Theorem 2's
Bernoulli oracle, :class:`BernoulliOracles`, measured by :func:`bernoulli_table` (``python -m blobench.claims.ji2025``)
but not registered as a claim: its eps^{-4} kappa^{5/2} trend does not fit the ci budget (docs/lower_bounds.md).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable
from unittest import mock

import numpy as np
import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.complexity import calls_to_target, fit_exponent, theory_budget
from blobench.measure.outer import outer_loop

CITE = "K. Ji, arXiv 2511.19656 v2: Theorem 1, eq. (6)-(8), Definition 4"

_LOGGED = ("grad_x_f", "grad_y_f", "grad_f", "grad_y_g", "grad_x_g", "grad_g", "hvp", "jvp", "hvp_jvp", "linearize",
           "f_value", "g_value")


class WakeOracles(Oracles):
    """Oracles that record, at every call, the counted calls made before it and whether the x it is given has x_T != 0."""

    def __init__(self, problem):
        super().__init__(problem)
        self.total = 0
        self.log: list[tuple[int, bool]] = []

    def _count(self, name: str, k: int = 1) -> None:
        super()._count(name, k)
        self.total += k


def _logged(name: str) -> Callable:
    base = getattr(Oracles, name)

    def method(self, x, *args, **kw):
        self.log.append((self.total, bool(torch.as_tensor(x).detach()[-1] != 0)))
        return base(self, x, *args, **kw)

    method.__name__ = name
    return method


for _n in _LOGGED:
    setattr(WakeOracles, _n, _logged(_n))


class _CheatNCSC(harness.Estimator):
    """Negative control (not registered): returns grad H(x) from the problem, with no counted oracle call."""

    name = "cheat"

    def estimate(self, oracles, x, noise, state=None):
        return harness.Estimate(oracles.problem.hypergradient(x))


@harness.register_claim("ji-ncsc-zero-chain")
class NCSCZeroChain(Claim):
    citation = CITE
    statement = ("On Ji's NC-SC instance ji-ncsc (T = 4, mu = 0.005 so n = 7, L_g = L_f = lam = 1), every registered "
                 "zero-respecting method run from x = 0, y = 0 (AID-CG, AID-FP, AID-NS, ITD, AccBiO and Algorithm 1, F2BA, "
                 "F2BA+, AccF2BA+, F2SA, BOME, HOAG) passes x with x_T != 0 to no oracle call before T n = 28 counted calls; and at least "
                 "one of them does reach x_T != 0 within its run (the count is exact, and not vacuous).")
    control = "a method that reads grad H from the problem object (uncounted): x_T wakes after T outer steps and 0 counted calls"
    METHODS = (("aid-cg", {"inner_steps": 10, "solver_steps": 5}), ("aid-fp", {"inner_steps": 10, "solver_steps": 5}),
               ("aid-neumann", {"inner_steps": 10, "solver_steps": 5}), ("itd", {"inner_steps": 10}), ("accbio", {}),
               ("accbio-alg1", {}), ("f2ba", {}), ("f2ba-plus", {}), ("accf2ba-plus", {"outer_lr": 0.5}), ("f2sa", {}),
               ("bome", {}), ("hoag", {}))

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("ji-ncsc", T=4, mu=0.005)
        bound = p.zero_chain_calls()
        steps = 25 if size == "ci" else 400
        methods = [("cheat", None)] if control else [(n, kw) for n, kw in self.METHODS if n in harness.estimators()]
        rows: dict[str, Any] = {}
        ok = True
        for name, kw in methods:
            est = _CheatNCSC() if control else harness.estimator(name, **kw)
            o = WakeOracles(p)
            tr = outer_loop(p, est, steps, 0.5 if name != "bome" else 0.05, oracles=o)
            woke = [k for k, awake in o.log if awake]
            final_awake = bool(tr.x_final[-1] != 0)
            first = woke[0] if woke else (o.total if final_awake else None)
            early = first is not None and first < bound
            ok &= not early
            rows[name] = {"calls": o.total, "first_call_with_xT_awake": first, "x_T_final_nonzero": final_awake}
        ok = ok and any(r["first_call_with_xT_awake"] is not None for r in rows.values())
        return Verdict(ok, "first counted call with x_T != 0: " + ", ".join(
            f"{k} {v['first_call_with_xT_awake']}" for k, v in rows.items()) + f" (None: x_T stayed 0 in {steps} steps)",
            f">= T n = {bound} for every method, and reached by at least one", {"runs": rows, "T": p.T, "n": p.n})


# ----------------------------------------------------------------------------- claim (b): calls to ||grad H|| <= eps

_NCSC_MEMO = memo()
_B_DELTA = 3.0  # Delta: H(0) - inf H <= Delta (Lemma 4); fixed over the grid, so T n carries the theorem's kappa and eps
_B_SIGMA = 0.3  # outer GD step sigma / H_scale: sigma in the chain's own coordinates u = C~ n x/lam (module docstring)


def _b_grid(size: str) -> dict[str, list[tuple[float, int]]]:
    """(eps, n) points. ci: the kappa axis at eps = 0.1 (n = 2, 3, 4: kappa = 4n^2 + 1 = 17, 37, 65; T = 9, 18, 32)
    and the eps axis at n = 2 (eps = 0.1, 0.1/sqrt 2, 0.05: T = 9, 18, 37). full: n = 3, 4, 6, 8 and, at n = 3,
    eps = 0.1 to 0.1/(2 sqrt 2) (T = 18 to 150)."""
    if size == "ci":
        return {"kappa": [(0.1, n) for n in (2, 3, 4)], "eps": [(e, 2) for e in (0.1, 0.1 / 2**0.5, 0.05)]}
    return {"kappa": [(0.1, n) for n in (3, 4, 6, 8)], "eps": [(e, 3) for e in (0.1, 0.1 / 2**0.5, 0.05, 0.05 / 2**0.5)]}


def _b_instance(eps: float, n: int, variant: str) -> dict[str, Any]:
    from blobench.problems.ji_ncsc import chain_constants, theorem1_instance

    d = theorem1_instance(eps, n, _B_DELTA)
    if variant == "lam-without-n":  # the control: lam = eps L/(L_f C~), Theorem 1's 1/n dropped
        L = chain_constants(n, d["c_tilde"])["L_scale"]
        lam = eps * L / (d["L_f"] * d["c_tilde"])
        T = max(1, math.floor(_B_DELTA * L / (12 * lam * lam * d["L_f"])))
        d = {**d, "lam": lam, "T": T, "bound": T * n}
    return d


def _b_run(eps: float, n: int, variant: str) -> dict[str, Any]:
    """Calls of AID-BiO (aid-cg: warm-started AGD inner and CG, 2 sqrt(kappa) steps each; outer GD with step
    sigma/H_scale) to ||grad H|| <= eps on Theorem 1's instance for (eps, n), beside its exact bound T n."""
    key = (eps, n, variant)
    if key in _NCSC_MEMO:
        return _NCSC_MEMO[key]
    d = _b_instance(eps, n, variant)
    p = harness.problem("ji-ncsc", **{k: d[k] for k in ("T", "mu", "lam", "L_g", "L_f", "c_tilde")})
    c = p.constants
    b = theory_budget("aid-cg", {"inner_solver": "agd"}, c, 2.0)
    est = harness.estimator("aid-cg", inner_solver="agd", warm_start=True, **b)
    r = calls_to_target(p, est, [eps * eps], criterion="grad_norm_sq", max_steps=2000, outer_lr=_B_SIGMA / c["H_scale"])
    h = r["by_eps"][eps * eps]
    out = {"eps": eps, "n": n, "T": d["T"], "lam": d["lam"], "kappa": d["L_g"] / d["mu"], "kappa_exact": c["kappa"],
           "calls": float("nan") if h is None else float(h["total"]),
           "iterations": None if h is None else h["iteration"], "bound": d["bound"], **b}
    _NCSC_MEMO[key] = out
    return out


@harness.register_claim("ji-ncsc-calls-kappa-eps")
class NCSCCallsKappaEps(Claim):
    citation = CITE.replace("Theorem 1, eq. (6)-(8), Definition 4", "Theorem 1 and its proof (lam, T: eq. 11-12), eq. (6)-(8), Lemmas 3-4")
    statement = ("On Theorem 1's instance ji-ncsc built for each (eps, kappa) as the proof does (lam = eps L/(L_f C~ n), "
                 "T = floor(Delta L/(12 lam^2 L_f)), Delta = 3, L_g = L_f = C~ = 1, kappa = L_g/mu = 4n^2 + 1), the calls "
                 "of AID-BiO (warm-started AGD inner and CG, 2 sqrt(kappa) steps each, outer GD with a fixed step in the "
                 "chain's own scale) to ||grad H|| <= eps grow with kappa^{3/2} and eps^{-2}: fitted exponents (95% "
                 "intervals) in kappa (eps = 0.1, n = 2, 3, 4 at ci) within 0.2 of 3/2 and in 1/eps (n = 2, eps = 0.1 to 0.05 at ci) "
                 "within 0.2 of 2, each within 0.2 of the exact bound T n's on the same grid; every run reaches eps with "
                 "at least T n calls (the zero chain, eq. 8, and Lemma 3).")
    control = ("the instance built with lam = eps L/(L_f C~), the proof's 1/n dropped: T no longer grows with n^2, so "
               "the calls' kappa exponent falls to about 1/2")
    TOL = 0.2

    def evaluate(self, size: str, control: bool) -> Verdict:
        variant = "lam-without-n" if control else "theorem1"
        grid = _b_grid(size)
        ky = [_b_run(e, n, variant) for e, n in grid["kappa"]]
        ex = [_b_run(e, n, variant) for e, n in grid["eps"]]
        fk = fit_exponent([r["kappa"] for r in ky], [r["calls"] for r in ky])
        fkb = fit_exponent([r["kappa"] for r in ky], [r["bound"] for r in ky])
        fe = fit_exponent([1 / r["eps"] for r in ex], [r["calls"] for r in ex])
        feb = fit_exponent([1 / r["eps"] for r in ex], [r["bound"] for r in ex])
        rows = ky + [r for r in ex if r not in ky]
        above = all(np.isfinite(r["calls"]) and r["calls"] >= r["bound"] for r in rows)
        ok = (above and abs(fk["slope"] - 1.5) <= self.TOL and abs(fk["slope"] - fkb["slope"]) <= self.TOL
              and abs(fe["slope"] - 2.0) <= self.TOL and abs(fe["slope"] - feb["slope"]) <= self.TOL)
        ratio = [r["calls"] / r["bound"] for r in rows]
        return Verdict(ok, f"exponent in kappa {_fit(fk)} (bound T n: {_fit(fkb)}), in 1/eps {_fit(fe)} (bound {_fit(feb)}); "
                       f"calls {[r['calls'] for r in rows]} vs T n {[r['bound'] for r in rows]} (ratio "
                       f"{min(ratio):.1f}..{max(ratio):.1f})",
                       f"kappa exponent within {self.TOL} of 1.5 and of the bound's, 1/eps exponent within {self.TOL} of 2 "
                       "and of the bound's; calls >= T n",
                       {"kappa_axis": ky, "eps_axis": ex, "fit_kappa": fk, "fit_kappa_bound": fkb, "fit_eps": fe,
                        "fit_eps_bound": feb, "Delta": _B_DELTA, "sigma": _B_SIGMA},
                       rates=[{"name": "calls kappa exponent", "rate": fk["slope"], "rate_lo": fk["lo"], "rate_hi": fk["hi"],
                               "rate_bound": 1.5, "rate_violation": False},
                              {"name": "calls 1/eps exponent", "rate": fe["slope"], "rate_lo": fe["lo"], "rate_hi": fe["hi"],
                               "rate_bound": 2.0, "rate_violation": False}])


def _fit(f: dict) -> str:
    return f"{f['slope']:.3f} [{f['lo']:.3f}, {f['hi']:.3f}]"


def _patch_chain_shortcut() -> contextlib.AbstractContextManager:
    """A shortcut in g: x_T coupled (weakly) to y^(0)_n, the first coordinate to wake, so the chain has length 1."""
    from blobench.problems.ji_ncsc import JiNCSC

    orig = JiNCSC.inner

    def leaky(self, x, y, batch=None):
        return orig(self, x, y, batch) - 1e-3 * x[-1] * y[self.n - 1]

    return mock.patch.object(JiNCSC, "inner", leaky)


def _patch_theorem1_lam_without_n() -> contextlib.AbstractContextManager:
    """theorem1_instance with lam = eps L/(L_f C~): the proof's 1/n dropped (T then no longer grows with n^2)."""
    import blobench.problems.ji_ncsc as ji_ncsc

    orig = ji_ncsc.theorem1_instance

    def wrong(eps, n, Delta=1.0, L_g=1.0, L_f=1.0, c_tilde=1.0):
        d = orig(eps, n, Delta, L_g, L_f, c_tilde)
        L = ji_ncsc.chain_constants(n, c_tilde)["L_scale"]
        lam = d["lam"] * n
        T = max(1, math.floor(Delta * L / (12 * lam * lam * L_f)))
        return {**d, "lam": lam, "T": T, "bound": T * n}

    return mock.patch.object(ji_ncsc, "theorem1_instance", wrong)


def _patch_uncounted() -> contextlib.AbstractContextManager:
    return mock.patch.object(Oracles, "_count", lambda self, name, k=1: None)


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], contextlib.AbstractContextManager]]] = [
    ("ncsc-chain-shortcut", ("ji-ncsc-zero-chain",), _patch_chain_shortcut),
    ("ncsc-theorem1-lam-without-n", ("ji-ncsc-calls-kappa-eps",), _patch_theorem1_lam_without_n),
    ("ncsc-oracle-counting-bypassed", ("ji-ncsc-calls-kappa-eps",), _patch_uncounted),
]


# ----------------------------------------------------------------------------- claim (c): what was tried (no claim)

class BernoulliOracles(Oracles):
    """Theorem 2's stochastic oracle as we read it (Ji 2025, Sec. 5, after Arjevani et al. 2023, Lemma 3): at each
    g-gradient call the entry of the next chain coordinate to activate, the first zero coordinate of the query in eq.
    (8)'s order (y^(0)_n, then per block i: y^(i)_1, ..., y^(i)_n, x_i), is multiplied by xi/p with xi ~ Bernoulli(p)
    drawn from ``generator``; f's gradients are exact. Unbiased, and progress along the chain waits 1/p calls per link.
    Used by :func:`bernoulli_table` only: claim (c) is not registered (docs/lower_bounds.md says why)."""

    def __init__(self, problem, p_keep: float, generator: torch.Generator):
        super().__init__(problem)
        self.p_keep, self.gen = float(p_keep), generator

    def _frontier(self, x: torch.Tensor, y: torch.Tensor) -> tuple[str, int] | None:
        n, T = self.problem.n, self.problem.T
        Y = y.detach().reshape(T + 1, n)
        if Y[0, n - 1] == 0:
            return "y", n - 1
        for i in range(1, T + 1):
            for j in range(n):
                if Y[i, j] == 0:
                    return "y", i * n + j
            if x[i - 1] == 0:
                return "x", i - 1
        return None

    def _gate(self, kind: str, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        fr = self._frontier(x, y)
        if fr is None or fr[0] != kind:
            return g
        xi = float(torch.rand(1, generator=self.gen, dtype=torch.float64) < self.p_keep)
        g = g.clone()
        g[fr[1]] = g[fr[1]] * xi / self.p_keep
        return g

    def grad_y_g(self, x, y, batch=None):
        return self._gate("y", x, y, super().grad_y_g(x, y, batch))

    def grad_x_g(self, x, y, batch=None):
        return self._gate("x", x, y, super().grad_x_g(x, y, batch))


def bernoulli_table(ps: tuple[float, ...] = (1.0, 0.25, 1 / 16, 1 / 64), seeds: int = 3, max_steps: int = 3000
                    ) -> list[dict[str, Any]]:
    """Calls of F2BA (penalty 10, K = 10, outer step 0.3/H_scale) to ||grad H|| <= eps on Theorem 1's instance for
    eps = 0.1, n = 2 (Delta = 3: T = 9, T n = 18) under :class:`BernoulliOracles` with keep probability p, per seed
    (seed 0 only at p = 1, where the oracle is exact). ``python -m blobench.claims.ji2025``; docs/lower_bounds.md."""
    from blobench.problems.ji_ncsc import theorem1_instance

    d = theorem1_instance(0.1, 2, _B_DELTA)
    p = harness.problem("ji-ncsc", **{k: d[k] for k in ("T", "mu", "lam", "L_g", "L_f", "c_tilde")})
    target = d["eps"] ** 2
    out = []
    for pk in ps:
        calls = []
        for s in range(seeds if pk < 1 else 1):
            o = BernoulliOracles(p, pk, torch.Generator().manual_seed(s))
            tr = outer_loop(p, harness.estimator("f2ba", penalty=10.0, inner_steps=10), max_steps,
                            0.3 / p.constants["H_scale"], oracles=o, stop=lambda t: t.grad_norm_sq[-1] <= target)
            hit = [i for i, g in enumerate(tr.grad_norm_sq) if g <= target]
            calls.append(float(sum(tr.calls[k][hit[0]] for k in tr.calls)) if hit else float("nan"))
        out.append({"p": pk, "calls": calls, "nT_over_p": d["bound"] / pk, "T": d["T"], "n": d["n"]})
    return out


if __name__ == "__main__":  # pragma: no cover - the docs' table for claim (c)
    for r in bernoulli_table():
        print(f"p = {r['p']:.4g}: calls {r['calls']} (n T / p = {r['nT_over_p']:.0f})", flush=True)
