"""UFO-BLO's results as executable claims.

Likhosherstov, Song, Choromanski, Davis, Weller, "Debiasing a First-order Heuristic for Approximate
Bi-level Optimization" (ICML 2021; arXiv 2006.03631 "UFO-BLO"). Each claim cites the result it
checks and has a negative control on which the same decision rule must fail.

Cost claims (expected cost O(r + q r^2) measured, and the O(1)-memory exact branch): Likhosherstov, Song, Choromanski, Davis, Weller, "Debiasing a First-order Heuristic for Approximate
Bi-level Optimization" (ICML 2021; arXiv 2006.03631 "UFO-BLO"), Sec. 4. Cost is measured, never taken
from the estimator: oracle calls are counted at the oracle layer as they execute (blobench.measure.sampling.vmap_counted
under the coin-grouped batch, the counted Oracles one draw at a time), and seconds are the thread's CPU time of the
estimator running one draw at a time, cut into pieces at its oracle calls, each piece's minimum over interleaved rounds
kept (robust to other processes' load; :func:`cost_seconds`). ``python -m blobench.claims.ufo_blo`` prints the batched
wall-clock figure of issue 13 (q = 0.1 vs q = 1 at r = 100, interleaved, repeated, min and median);
``python -m blobench.claims.ufo_blo --load-test 20`` runs the seconds rule 20 times clean and 20 times under its
control with two busy processes alongside (issue 23).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, ContextManager, Iterator
from unittest import mock

import numpy as np
import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.metrics import mean_test
from blobench.measure.sampling import draw_noise

CITE = "Likhosherstov et al., ICML 2021 (arXiv 2006.03631)"


@contextlib.contextmanager
def scaled_correction(factor: float = 0.8) -> Iterator[None]:
    """UFO's correction (xi/q)(g - g_FO) multiplied by ``factor`` inside the estimator (one and many draws)."""
    from blobench.estimators.ufo import UFO

    def combine(self, g_fo, g, xi, q):
        return g_fo + (factor * self.p["correction_scale"] * xi / q) * (g - g_fo)

    with mock.patch.object(UFO, "_combine", combine):
        yield


@contextlib.contextmanager
def exact_branch_drops_hessian() -> Iterator[None]:
    """The exact branch's reverse pass drops every (I - alpha H) factor: maml's and UFO's "exact" gradient
    become g_FO, so nothing corrects FO's stall (the mechanism of Theorems 1 and 3)."""
    import blobench.estimators.ufo as ufo_mod

    def dropped(o, x, traj, y0, v, lr, steps, batch=None, truncate=None):
        return torch.zeros_like(x), v

    with mock.patch.object(ufo_mod, "unroll_backward", dropped):
        yield


@contextlib.contextmanager
def correction_without_inverse_q() -> Iterator[None]:
    """UFO's correction loses its importance weight 1/q: g_FO + xi (g - g_FO), whose mean moves only the fraction q of
    the way from E g_FO to the exact gradient (eq. (5)'s debiasing gone; a one-character slip). Under the authors'
    adaptive rule the state then keeps q at its floor, so UFO is FO plus a rare small correction."""
    from blobench.estimators.ufo import UFO

    def combine(self, g_fo, g, xi, q):
        return g_fo + (self.p["correction_scale"] * xi) * (g - g_fo)

    with mock.patch.object(UFO, "_combine", combine):
        yield


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("ufo-correction-x0.8", ("ufo-unbiased",), scaled_correction),
    ("ufo-correction-without-inverse-q", ("ufo-fewshot-table",), correction_without_inverse_q),
    ("ufo-exact-branch-drops-hessian", ("ufo-fo-stalls", "ufo-unbiased"), exact_branch_drops_hessian),
]


def _unbiased_cases(size: str) -> list[tuple[str, dict, torch.Tensor | None, int, float]]:
    """(problem, params, x or None for x0, draws, q) per algorithm-based problem."""
    big = size == "full"
    cases = [
        ("ufo-counterexample", {}, torch.tensor([3.0], dtype=torch.float64), 100000 if big else 20000, 0.3),
        ("meta-linreg", {"dim": 5}, None, 100000 if big else 10000, 0.3),
        ("sinusoid", {"hidden": 16 if big else 4, "tasks": 512 if big else 16, "unroll_steps": 5 if big else 3,
                      "unroll_lr": 0.05}, None, 20000 if big else 800, 0.5),
    ]
    try:
        import sklearn  # noqa: F401

        cases.append(("digits-fewshot", {"ways": 3, "hidden": 0, "tasks": 16 if not big else 256}, None,
                      20000 if big else 800, 0.5))
    except ImportError:
        pass
    return [c for c in cases if c[0] in harness.problems()]


@harness.register_claim("ufo-unbiased")
class UFOUnbiased(Claim):
    citation = CITE + ", Theorem 2 (E[UFO] = exact meta-gradient)"
    statement = ("UFO's estimate g_FO + (xi/q)(g - g_FO) has mean equal to the exact gradient of M^(r) on every "
                 "algorithm-based problem (per-coordinate t-tests, Holm-corrected, alpha = 0.01 per problem).")
    control = "mis-scaled UFO: g_FO + (xi/(2q))(g - g_FO) (correction_scale = 0.5) must be rejected on some problem"

    def evaluate(self, size: str, control: bool) -> Verdict:
        ev: dict[str, Any] = {}
        ok = True
        for name, params, x, n, q in _unbiased_cases(size):
            p = harness.problem(name, **params)
            x = p.x0() if x is None else x
            e = harness.estimator("ufo", q=q, correction_scale=0.5 if control else 1.0)
            out = harness.estimate(p, e, x, seed=11, n=n)
            t = mean_test(out.grads.numpy(), p.hypergradient(x).numpy(), alpha=0.01)
            ev[name] = {"p_holm": t["p_min_holm"], "reject": bool(t["reject"]), "n": n, "q": q,
                        "min_detectable_bias_99": t["min_detectable_bias_99"],
                        "bias_norm": float(torch.linalg.norm(out.grads.mean(0) - p.hypergradient(x)))}
            ok = ok and not t["reject"]
        meas = "; ".join(f"{k}: p={v['p_holm']:.3g}" for k, v in ev.items())
        return Verdict(ok, meas, "no rejection at alpha=0.01 on any problem (false-alarm <= 1% each)", ev)


def _second_moment(p, x: torch.Tensor, q: float, n: int, scale: float, seed: int = 5) -> dict[str, float]:
    """MC estimate of E||g^||^2 with a 99% CI, and the identity's prediction from exact per-task quantities."""
    e = harness.estimator("ufo", q=q, correction_scale=scale)
    out = harness.estimate(p, e, x, seed=seed, n=n)
    sq = (out.grads ** 2).sum(1).numpy()
    m, se = float(sq.mean()), float(sq.std(ddof=1) / math.sqrt(n))
    _, g, gfo = p.task_gradients(float(x[0]))
    pred = float(np.mean(g ** 2) + (1 / q - 1) * np.mean((g - gfo) ** 2))
    return {"mc": m, "se": se, "lo": m - 2.576 * se, "hi": m + 2.576 * se, "predicted": pred, "q": q, "n": n}


@harness.register_claim("ufo-second-moment")
class UFOSecondMoment(Claim):
    citation = CITE + ", Theorem 2 (second moment)"
    statement = ("E||g^||^2 = E_task[||g||^2 + (1/q - 1)||g - g_FO||^2]: on the counterexample the Monte-Carlo "
                 "second moment's 99% CI (Bonferroni over the q values) contains the exact prediction.")
    control = "mis-scaled UFO (xi/(2q)): the same CI must exclude the identity's prediction"

    def evaluate(self, size: str, control: bool) -> Verdict:
        p = harness.problem("ufo-counterexample")
        n = 200000 if size == "full" else 40000
        ev = {}
        ok = True
        qs = (0.1, 0.3, 0.7)
        zq = 2.576 if len(qs) == 1 else float(__import__("scipy").stats.norm.isf(0.005 / len(qs)))
        for q in qs:
            r = _second_moment(p, torch.tensor([3.0], dtype=torch.float64), q, n, 0.5 if control else 1.0)
            r["lo"], r["hi"] = r["mc"] - zq * r["se"], r["mc"] + zq * r["se"]
            ev[f"q={q}"] = r
            ok = ok and r["lo"] <= r["predicted"] <= r["hi"]
        meas = "; ".join(f"{k}: {v['mc']:.4g} [{v['lo']:.4g}, {v['hi']:.4g}] vs {v['predicted']:.4g}" for k, v in ev.items())
        return Verdict(ok, meas, "prediction inside every CI", ev)


# members where the exact gradient's task noise at theta* is small (alpha a2 near 1), so 200 SGD steps resolve the
# three behaviours; full size adds the paper's default member (r = 10, alpha = 0.1, a1 = 0.5) and more steps
STALL_FAMILY = {"ci": [{"unroll_steps": 3, "unroll_lr": 0.6, "a1": 0.25, "D": 0.06},
                       {"unroll_steps": 5, "unroll_lr": 0.5, "a1": 0.25, "D": 0.12},
                       {"unroll_steps": 2, "unroll_lr": 0.6, "a1": 0.25, "D": 0.03}],
                "full": [{"unroll_steps": r, "unroll_lr": al, "a1": 0.25, "D": D} for r, al in ((2, 0.6), (3, 0.6), (5, 0.5))
                         for D in (0.03, 0.12)] + [{"unroll_steps": 10, "unroll_lr": 0.1, "a1": 0.5, "D": 0.06}]}


STALL_STEPS = {"ci": 200, "full": 1000}


STALL_SEGMENT = 10


STALL_Q = 0.5


def stall_run(p, estimator: harness.Estimator, steps: int, seed: int) -> dict[str, Any]:
    """SGD on M^(r) with ``estimator`` through the shared outer loop (blobench.measure.outer.outer_loop), from the FO fixed
    point theta_FO: segments of STALL_SEGMENT constant steps beta_k = beta0 / (1 + k / 2) (beta0 = 1/M''(theta*),
    a piecewise-harmonic schedule), each segment's outer_loop warm-started from the last one's x_final and seeded
    apart; the segment end points of the second half are averaged (Polyak-Ruppert). Returns the averaged iterate,
    |M'| there (ground truth) and the oracle calls the loop counted."""
    from blobench.measure.outer import outer_loop

    beta0 = 1.0 / float(0.5 * np.sum(p.a * p.pw ** 2))
    x = p.fo_fixed_point()
    ends, calls = [], 0.0
    for k in range(steps // STALL_SEGMENT):
        tr = outer_loop(p, estimator, STALL_SEGMENT, beta0 / (1 + k / 2), "constant", seed=seed * 100003 + k, x0=x,
                        eval_every=STALL_SEGMENT)
        x = tr.x_final
        calls += sum(v[-1] for v in tr.calls.values())
        if (k + 1) * STALL_SEGMENT > steps // 2:
            ends.append(float(x[0]))
    xbar = float(np.mean(ends))
    return {"x_avg": xbar, "abs_grad": abs(float(p.hypergradient(torch.tensor([xbar], dtype=torch.float64))[0])),
            "calls": calls}


_STALL_CACHE: dict[tuple, dict[str, Any]] = memo()


@harness.register_claim("ufo-fo-stalls")
class FOStalls(Claim):
    citation = CITE + ", Theorem 1 / Sec. 3 (FO-BLO counterexample) and Theorem 3 (UFO-SGD converges)"
    statement = ("On a sweep of the counterexample family (r, alpha, D; 3 members at ci, 7 at full), E g_FO vanishes at "
                 "theta_FO where |M'| = sqrt(2D) (closed form, checked to 1e-8); SGD through the shared outer loop "
                 "(blobench.measure.outer.outer_loop, piecewise-harmonic steps from theta_FO, 200 steps at ci, Polyak average of "
                 "the second half) with the registered estimators ends, in median over members, with |M'|/sqrt(2D) "
                 "within 1/3 of 1 for 'fo' (it stays at the stall), below 0.4 for 'ufo' (q = 0.5) and below 0.25 for "
                 "'maml' (exact). (A numpy simulation of the same protocol, 400 seeds per member: per run UFO < 0.4 in "
                 "~90%, FO within 1/3 in ~85%, the control's UFO < 0.4 in < 5%.)")
    control = ("UFO with its correction halved (correction_scale = 0.5, its own coins and exact branches): biased, its "
               "median |M'|/sqrt(2D) must stay at or above 0.4")

    def evaluate(self, size: str, control: bool) -> Verdict:
        steps = STALL_STEPS[size]
        arms = {"fo": ("fo", {}), "ufo": ("ufo", {"q": STALL_Q, "correction_scale": 0.5 if control else 1.0}),
                "maml": ("maml", {})}
        members, fixed_ok = [], True
        for i, params in enumerate(STALL_FAMILY[size]):
            p = harness.problem("ufo-counterexample", **params)
            stall = math.sqrt(2 * p.p["D"])
            xfo = p.fo_fixed_point()
            fo_mean, mfo = float(p.fo_mean(xfo)[0]), abs(float(p.hypergradient(xfo)[0]))
            fixed_ok = fixed_ok and abs(fo_mean) < 1e-10 and abs(mfo - stall) < 1e-8 * stall
            row = {**params, "stall": stall, "theta_FO": float(xfo[0]), "theta_star": float(p.stationary_points()[0][0]),
                   "E_gFO_at_theta_FO": fo_mean}
            for arm, (name, kw) in arms.items():
                key = (size, i, name, tuple(sorted(kw.items())))
                if key not in _STALL_CACHE:
                    _STALL_CACHE[key] = stall_run(p, harness.estimator(name, **kw), steps, seed=7 + i)
                res = _STALL_CACHE[key]
                row[f"{arm}_ratio"] = res["abs_grad"] / stall
                row[f"{arm}_x_avg"] = res["x_avg"]
                row[f"{arm}_calls"] = res["calls"]
            members.append(row)
        med = {arm: float(np.median([m[f"{arm}_ratio"] for m in members])) for arm in arms}
        ok = fixed_ok and abs(med["fo"] - 1) <= 1 / 3 and med["ufo"] < 0.4 and med["maml"] < 0.25
        meas = (f"median |M'|/sqrt(2D) over {len(members)} members: fo {med['fo']:.3g}, ufo{' (half correction)' if control else ''} "
                f"{med['ufo']:.3g}, maml {med['maml']:.3g}; per member (r, alpha, D: fo/ufo/maml): "
                + "; ".join(f"({m['unroll_steps']}, {m['unroll_lr']}, {m['D']}: {m['fo_ratio']:.2f}/{m['ufo_ratio']:.2f}/"
                            f"{m['maml_ratio']:.2f})" for m in members))
        return Verdict(ok, meas, "fo in [2/3, 4/3]; ufo < 0.4; maml < 0.25 (median |M'|/sqrt(2D))",
                       {"members": members, "medians": med, "steps": steps, "q": STALL_Q, "fixed_point_ok": fixed_ok})


FEWSHOT_PROBLEM = {"ways": 5, "shots": 1, "query": 5, "hidden": 32, "unroll_steps": 5, "unroll_lr": 0.5, "tasks": 2048}


FEWSHOT_SIZES = {"ci": {"iters": 40, "seeds": 3, "test_tasks": 300},
                 "full": {"iters": 600, "seeds": 8, "test_tasks": 1000}}


FEWSHOT_META_BATCH, FEWSHOT_LR = 8, 3e-3


ADAPTIVE = "UFO adaptive q (authors)"


FEWSHOT_METHODS = {"FO": ("fo", {}), "UFO q=0.1": ("ufo", {"q": 0.1}), "UFO q=0.3": ("ufo", {"q": 0.3}),
                   ADAPTIVE: ("ufo", {"q": "adaptive"}), "UFO adaptive q (product rule)": ("ufo", {"q": "adaptive-product"}),
                   "exact (MAML)": ("maml", {})}


#: the control: the authors' adaptive UFO with its exact-branch coin decoupled from its weight (weight 1/q on a coin
#: of probability q/2, i.e. correction_scale 0.5 on the same coins): biased halfway to FO; not an arm of the table
FEWSHOT_CONTROL = ("ufo", {"q": "adaptive", "correction_scale": 0.5})


_FEWSHOT_CACHE: dict[tuple, dict[str, Any]] = memo()
#: the positive control (``evaluate_positive``): the table's pipeline and rule where the effect provably exists. UFO-BLO's
#: counterexample (Sec. 3; ufo-fo-stalls' ci member r = 2, alpha = 0.6, a1 = 0.25, D = 0.03) meta-trained from theta_FO,
#: where E g_FO = 0 while |M'| = sqrt(2D): FO stays (Theorem 1), exact MAML and the unbiased UFO move to theta*
#: (Theorem 3). The score in place of accuracy is -|M'(x)| / sqrt(2D) by the problem's exact float64 gradient (0 at
#: theta*, -1 at theta_FO); Adam's step 0.3 crosses theta_FO - theta* (3.75) in about 13 of the 40 iterations.
FEWSHOT_POSITIVE = {"problem": {"unroll_steps": 2, "unroll_lr": 0.6, "a1": 0.25, "D": 0.03}, "iters": 40, "adam_lr": 0.3,
                    "seeds": {"ci": 3, "full": 5}, "methods": ("FO", ADAPTIVE, "exact (MAML)")}


def _t_ci(vals: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over seeds."""
    from scipy import stats

    a = np.asarray(vals, dtype=float)
    m = float(a.mean())
    if a.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return m, m - h, m + h


def _detectable(diffs: list[float], power: float = 0.8) -> float:
    """Smallest true mean paired difference the one-sided 97.5% t-test detects with ``power`` at the measured spread."""
    from scipy import stats

    a = np.asarray(diffs, dtype=float)
    k = a.size - 1
    return float((stats.t.ppf(0.975, k) + stats.t.ppf(power, k)) * a.std(ddof=1) / math.sqrt(a.size))


@functools.lru_cache(maxsize=None)
def _fewshot_setup(size: str) -> tuple[Any, dict[str, torch.Tensor], float]:
    """The digits-fewshot problem (its 2048-task pool), the held-out test tasks and the initialisation's accuracy:
    built once per size and shared by every run."""
    p = harness.problem("digits-fewshot", **FEWSHOT_PROBLEM)
    test = p.make_tasks("test", FEWSHOT_SIZES[size]["test_tasks"], torch.Generator().manual_seed(123))
    return p, test, float(p.accuracy(p.x0(), test).mean())


@functools.lru_cache(maxsize=None)
def _positive_setup() -> tuple[Any, torch.Tensor, Callable[[torch.Tensor], float]]:
    """The positive control's problem, its start theta_FO and its score -|M'(x)| / sqrt(2D) (exact, float64)."""
    p = harness.problem("ufo-counterexample", **FEWSHOT_POSITIVE["problem"])
    stall = math.sqrt(2 * p.p["D"])
    return p, p.fo_fixed_point(), lambda x: -abs(float(p.hypergradient(x)[0])) / stall


def fewshot_run(spec: tuple[str, dict], size: str, seed: int, budget: float | None, positive: bool = False) -> dict[str, Any]:
    """Meta-train one estimator on digits-fewshot (5-way 1-shot; batched meta-batches through blobench.measure.outer.meta_train)
    until ``budget`` oracle calls (or ``iters`` iterations when None; at most 4 x iters), and score the equal-iteration
    snapshot and the end point on held-out test tasks. ``positive``: the same on the positive control's counterexample
    (FEWSHOT_POSITIVE), scored by -|M'| / sqrt(2D). Memoised across the claim and its control."""
    name, params = spec
    key = (name, tuple(sorted(params.items())), size, seed, budget, positive)
    if key in _FEWSHOT_CACHE:
        return _FEWSHOT_CACHE[key]
    from blobench.measure.outer import meta_train

    if positive:
        p, start, score = _positive_setup()
        iters, lr = FEWSHOT_POSITIVE["iters"], FEWSHOT_POSITIVE["adam_lr"]
    else:
        p, test, _ = _fewshot_setup(size)
        start, score = None, (lambda x: float(p.accuracy(x, test).mean()))
        iters, lr = FEWSHOT_SIZES[size]["iters"], FEWSHOT_LR
    run = meta_train(p, harness.estimator(name, **params), iters * (1 if budget is None else 4), FEWSHOT_META_BATCH,
                     lr, seed=1000 + seed, budget=budget, batched=True, snapshots=(iters,), x0=start)
    x_it = run.snapshots.get(iters, run.x)
    out = {"acc_iters": score(x_it), "acc_compute": score(run.x),
           "iterations": run.iterations, "calls": run.calls[-1], "calls_at_iters": run.calls[min(iters, len(run.calls)) - 1],
           "mean_q": float(np.mean(run.q)) if run.q else None}
    _FEWSHOT_CACHE[key] = out
    return out


def fewshot_table(size: str, control: bool = False, positive: bool = False) -> dict[str, Any]:
    """The few-shot table: per arm, test accuracy (per seed, mean and 95% t-interval over seeds) after the same number
    of meta-iterations and after the same oracle budget (exact's calls at that many iterations); with ``control``
    the authors' adaptive arm is replaced by FEWSHOT_CONTROL. ``positive``: the positive control's table
    (FEWSHOT_POSITIVE: the counterexample, the arms the rule reads, score -|M'| / sqrt(2D) in place of accuracy)."""
    if positive:
        cfg = {"iters": FEWSHOT_POSITIVE["iters"], "seeds": FEWSHOT_POSITIVE["seeds"][size]}
        methods = {k: FEWSHOT_METHODS[k] for k in FEWSHOT_POSITIVE["methods"]}
    else:
        cfg, methods = FEWSHOT_SIZES[size], FEWSHOT_METHODS
    seeds = list(range(cfg["seeds"]))
    exact = [fewshot_run(FEWSHOT_METHODS["exact (MAML)"], size, s, None, positive) for s in seeds]
    budget = float(np.mean([r["calls"] for r in exact]))
    rows: dict[str, dict[str, Any]] = {}
    for method, spec in methods.items():
        if control and method == ADAPTIVE:
            spec = FEWSHOT_CONTROL
        runs = exact if method == "exact (MAML)" else [fewshot_run(spec, size, s, budget, positive) for s in seeds]
        row: dict[str, Any] = {"estimator": spec[0], **spec[1]}
        for col in ("acc_iters", "acc_compute"):
            acc = [r[col] for r in runs]
            m, lo, hi = _t_ci(acc)
            row.update({col: acc, f"{col}_mean": m, f"{col}_ci": [lo, hi]})
        qs = [r["mean_q"] for r in runs if r["mean_q"] is not None]
        row.update({"iterations_compute": float(np.mean([r["iterations"] for r in runs])),
                    "calls_at_iters": float(np.mean([r["calls_at_iters"] for r in runs])),
                    "mean_q": float(np.mean(qs)) if qs else None})
        rows[method] = row
    if positive:
        p, start, score = _positive_setup()
        return {**cfg, "rows": rows, "seeds": seeds, "budget_calls": budget, "init_accuracy": score(start),
                "problem": {"name": "ufo-counterexample", **FEWSHOT_POSITIVE["problem"]}, "start": float(start[0]),
                "theta_star": float(p.stationary_points()[0][0]), "score": "-|M'(x)| / sqrt(2D)",
                "meta_batch": FEWSHOT_META_BATCH, "adam_lr": FEWSHOT_POSITIVE["adam_lr"]}
    return {**cfg, "rows": rows, "seeds": seeds, "budget_calls": budget, "init_accuracy": _fewshot_setup(size)[2],
            "problem": FEWSHOT_PROBLEM, "meta_batch": FEWSHOT_META_BATCH, "adam_lr": FEWSHOT_LR}


def _table_rule(tab: dict[str, Any]) -> tuple[bool, bool, str]:
    """The table's rule on a table's rows (the claim's and its positive control's): (equal-iterations rule,
    equal-compute rule, the paired figures as text); the figures are added to ``tab``."""
    rows = tab["rows"]
    it = _paired(rows, ADAPTIVE, "FO", "acc_iters")
    cp = _paired(rows, ADAPTIVE, "FO", "acc_compute")
    gap_fo = float(np.mean(np.asarray(rows["exact (MAML)"]["acc_iters"]) - np.asarray(rows["FO"]["acc_iters"])))
    gap_ufo = float(np.mean(np.asarray(rows["exact (MAML)"]["acc_iters"]) - np.asarray(rows[ADAPTIVE]["acc_iters"])))
    iters_ok = bool(it["ci"][0] > 0 and gap_fo > 0 and gap_ufo < 0.5 * gap_fo)
    compute_ok = bool(cp["ci"][1] > 0)
    tab.update({"ufo_minus_fo_iters": it, "ufo_minus_fo_compute": cp, "exact_minus_fo": gap_fo,
                "exact_minus_ufo": gap_ufo, "iters_rule": iters_ok, "compute_rule": compute_ok})
    text = (f"UFO(authors)-FO {it['mean']:+.3f} [{it['ci'][0]:+.3f}, {it['ci'][1]:+.3f}] / {cp['mean']:+.3f} "
            f"[{cp['ci'][0]:+.3f}, {cp['ci'][1]:+.3f}]; exact-FO {gap_fo:+.3f}, exact-UFO {gap_ufo:+.3f}; detectable (80%) "
            f"{it['detectable_80']:.3f} / {cp['detectable_80']:.3f}")
    return iters_ok, compute_ok, text


def _paired(rows, a: str, b: str, col: str) -> dict[str, Any]:
    d = list(np.asarray(rows[a][col]) - np.asarray(rows[b][col]))
    m, lo, hi = _t_ci(d)
    return {"mean": m, "ci": [lo, hi], "detectable_80": _detectable(d)}


TABLE_RULE = ("equal iterations: UFO - FO > 0 (95% CI) and exact - UFO < (exact - FO)/2; equal compute: UFO - FO "
              "interval's upper end > 0")


def _rows_text(rows: dict[str, dict[str, Any]]) -> str:
    fmt = lambda r, k: f"{r[k + '_mean']:.3f} [{r[k + '_ci'][0]:.3f}, {r[k + '_ci'][1]:.3f}]"  # noqa: E731
    return "; ".join(f"{k}{' q~%.2f' % r['mean_q'] if r['mean_q'] is not None else ''}: {fmt(r, 'acc_iters')} / "
                     f"{fmt(r, 'acc_compute')}" for k, r in rows.items())


@harness.register_claim("ufo-fewshot-table")
class UFOFewShotTable(Claim):
    citation = CITE + ", Sec. 5, Table 1 (few-shot Omniglot: UFO matches exact MAML, FO lags); digits stand-in"
    statement = ("5-way 1-shot digits (hidden 32, r = 5, alpha = 0.5, meta-batch 8, Adam 3e-3; 40 iterations, 3 seeds at "
                 "ci): with the authors' adaptive q, UFO's test accuracy exceeds FO's (paired 95% t-interval over seeds "
                 "above 0) and recovers at least half of FO's gap to exact MAML, at equal meta-iterations; and at equal "
                 "oracle budget (exact's calls) UFO is not worse than FO (paired interval's upper end above 0). Fixed "
                 "q = 0.1, 0.3 and the product-rule adaptive q are reported beside it, not gated. Power: the evidence "
                 "gives, from the measured seed-to-seed spread, the smallest paired difference detected with 80% power "
                 "(two-sided 5% t-test over the seeds).")
    control = ("the authors' adaptive UFO with its correction halved (correction_scale 0.5, own coins: biased halfway "
               "to FO; not an arm of the table) in place of the UFO arm: the same rule must fail")
    positive_control = ("the same pipeline and rule where the effect provably exists: UFO-BLO's counterexample (Sec. 3, "
                        "r = 2, alpha = 0.6, a1 = 0.25, D = 0.03) meta-trained from theta_FO (40 iterations, Adam 0.3, "
                        "meta-batch 8, 3 seeds at ci), score -|M'|/sqrt(2D) in place of accuracy: FO stays at its stall "
                        "(Theorem 1), exact MAML and the authors' adaptive UFO reach theta* (Theorem 3); the rule must hold")
    expected = "not reproduced"
    evidence_note = ("on the digits stand-in the authors' adaptive UFO does not beat FO by a significant margin at equal "
                     "meta-iterations, and at equal oracle budget FO is better (its extra iterations outweigh UFO's "
                     "debiasing); fixed q = 0.1 / 0.3 do no better. The figures, intervals and per-rule verdicts are "
                     "generated on every run (measured, evidence iters_rule / compute_rule).")

    def evaluate(self, size: str, control: bool) -> Verdict:
        tab = fewshot_table(size, control)
        rows = tab["rows"]
        iters_ok, compute_ok, paired = _table_rule(tab)
        tab["other_ufo_minus_fo"] = {k: {"iters": _paired(rows, k, "FO", "acc_iters"),
                                         "compute": _paired(rows, k, "FO", "acc_compute")}
                                     for k in rows if k.startswith("UFO") and k != ADAPTIVE}
        meas = f"{_rows_text(rows)} (equal iterations / equal compute); {paired}; init {tab['init_accuracy']:.3f}"
        return Verdict(iters_ok and compute_ok, meas, TABLE_RULE, tab)

    def evaluate_positive(self, size: str) -> Verdict:
        tab = fewshot_table(size, positive=True)
        iters_ok, compute_ok, paired = _table_rule(tab)
        meas = (f"counterexample from theta_FO, score -|M'|/sqrt(2D): {_rows_text(tab['rows'])} (equal iterations / "
                f"equal compute); {paired}")
        return Verdict(iters_ok and compute_ok, meas, TABLE_RULE, tab)


@contextlib.contextmanager
def double_exact_work() -> Any:
    """The exact branch runs twice while the oracle counters are put back after the first run: twice the work,
    the same reported counts (a silent slowdown only wall-clock time can see)."""
    import blobench.estimators.ufo as ufo_mod

    orig = ufo_mod.unroll_backward

    def twice(o, *args, **kwargs):
        saved = dict(o.counts)
        orig(o, *args, **kwargs)
        o.counts.update(saved)
        return orig(o, *args, **kwargs)

    with mock.patch.object(ufo_mod, "unroll_backward", twice):
        yield


COST_R = {"ci": [4, 8, 12], "full": [4, 8, 16, 24, 32]}


COST_Q = [0.1, 0.3, 1.0]


COST_N = {"ci": 1000, "full": 20000}


def _cost_problem(r: int):
    """meta-linreg with 2 parameters: cheap oracle calls, so the grid runs in seconds one draw at a time."""
    return harness.problem("meta-linreg", dim=2, unroll_steps=r, unroll_lr=0.05)


def _wls(X: np.ndarray, y: np.ndarray, se: np.ndarray) -> dict[str, Any]:
    """Weighted least squares of y on the columns [1, r, q r^2, q r] of X: coefficients, the ratio c/b with a
    delta-method 95% interval (covariance inflated when residuals exceed the stated se), residuals in se units."""
    W = 1.0 / se
    Xw = X * W[:, None]
    coef, *_ = np.linalg.lstsq(Xw, y * W, rcond=None)
    z = (X @ coef - y) * W
    s2 = max(float(z @ z) / max(len(y) - 4, 1), 1.0)
    cov = s2 * np.linalg.inv(Xw.T @ Xw)
    a, b, c, d = coef
    grad = np.array([0.0, -c / b ** 2, 1.0 / b, 0.0])
    h = 1.96 * float(math.sqrt(grad @ cov @ grad))
    return {"a": a, "b": b, "c": c, "d": d, "coef_se": np.sqrt(np.diag(cov)).tolist(), "c_over_b": c / b,
            "c_over_b_ci95": [c / b - h, c / b + h], "max_abs_z_residual": float(np.max(np.abs(z)))}


def cost_counts(memory: str, rs: list[int], qs: list[float], n: int, seed: int = 0) -> dict[str, Any]:
    """Mean oracle calls per UFO draw (all kinds, summed), counted at the oracle layer under harness.estimate's
    coin-grouped batch, over an (r, q) grid; WLS fit of the cell means to a + b r + c q r^2 + d q r."""
    rows, ses = [], []
    for r in rs:
        p = _cost_problem(r)
        for q in qs:
            out = harness.estimate(p, harness.estimator("ufo", q=q, memory=memory), seed=seed + r, n=n, chunk=n)
            tot = sum(v.double() for v in out.calls.values())
            rows.append((r, q, float(tot.mean())))
            ses.append(max(float(tot.std()) / math.sqrt(n), 1e-3))  # q = 1: deterministic cost
    R, Q, Y = (np.array(v, dtype=float) for v in zip(*rows))
    fit = _wls(np.stack([np.ones_like(R), R, Q * R ** 2, Q * R], 1), Y, np.asarray(ses))
    return {"rows": rows, "cell_se": ses, **fit}


SECONDS_R = {"ci": [2, 4, 8, 12, 16], "full": [2, 4, 8, 12, 16, 24]}
SECONDS_ROUNDS = {"ci": 12, "full": 30}
UNIT_CALLS = 20


class CutOracles(Oracles):
    """Counted oracles that also read the thread's CPU clock and the wall clock at every oracle call: cut points that
    split a timed run into pieces of about one oracle call (about 0.1 ms here), far shorter than a scheduler time
    slice. Counting is unchanged; the cuts only partition the time, whatever the counters say."""

    def __init__(self, problem: harness.Problem):
        super().__init__(problem)
        self.cuts: list[tuple[float, float]] | None = None

    def _count(self, name: str, k: int = 1) -> None:
        if self.cuts is not None:
            self.cuts.append((time.thread_time(), time.perf_counter()))
        super()._count(name, k)


def timed_pieces(o: CutOracles, fn: Callable[[], Any]) -> np.ndarray:
    """Run fn() once: (pieces x 2) array of (CPU, wall) seconds between consecutive cuts (start, every oracle call
    of ``o``, end). The pieces add up to the whole run."""
    o.cuts = [(time.thread_time(), time.perf_counter())]
    try:
        fn()
        o.cuts.append((time.thread_time(), time.perf_counter()))
        return np.diff(np.asarray(o.cuts), axis=0)
    finally:
        o.cuts = None


def cost_seconds(memory: str, rs: list[int], rounds: int, q: float = 0.5, seed: int = 0,
                 unit_calls: int = UNIT_CALLS) -> dict[str, Any]:
    """Seconds of UFO estimates one draw at a time, robust to other processes' load (issue 23).

    Cells: for each r one draw whose coin fires (xi = 1: the exact branch runs) and the same draw whose coin does not
    (xi = 0), and the unit: ``unit_calls`` grad_y_g calls back to back (the call the theory's r^2 term is made of).
    Every cell runs ``rounds`` times, the rounds interleaved over the cells. Each run is split into pieces at its
    oracle calls (:class:`CutOracles`; about 0.1 ms each, shorter than a scheduler slice) and each piece keeps its
    minimum over the rounds: the least-disturbed time of that piece of work, the standard estimator of cost under
    interference. A draw's seconds are the sum of its pieces' minima; the unit is the mean of its per-call pieces'
    minima, so draws and unit go through the same statistic with the same number of rounds.

    Whole draws timed end to end (up to ~30 ms here) are inflated under load in proportion to their length, by the
    pre-emptions (and the cache refills after them) they cannot avoid; the earlier rule (whole draws, minimum of 3,
    unit timed in 60-call blocks) read 1.01-1.60 x under two busy processes for a quiet 0.89.

    The draw seconds are fitted to a + b r + xi (c r^2 + d r) (relative errors), whose expectation over the coin is
    the claim's a + b r + c q r^2 + d q r; ``c_over_half_unit`` = c / (unit / 2) (theory 1: r(r-1)/2 recomputing
    grad_y_g calls). Two clocks: the thread's CPU time (``time.thread_time``; gated) and the wall clock
    (``time.perf_counter``; reported), each piece's minimum taken per clock."""
    cells: list[tuple[tuple[Any, int], CutOracles, Callable[[], Any]]] = []
    for r in rs:
        p = _cost_problem(r)
        e = harness.estimator("ufo", q=q, memory=memory)
        nz = {k: v[0] for k, v in draw_noise(p, e, 1, seed + r).items()}
        for xi in (0, 1):
            coin = {"ufo/u": torch.tensor(0.5 * q if xi else 0.5 * (1.0 + q), dtype=torch.float64)}
            o, x = CutOracles(p), p.x0()
            cells.append(((r, xi), o, functools.partial(e.estimate, o, x, {**nz, **coin})))
    pu = _cost_problem(4)
    ou = CutOracles(pu)
    batch = {k[len("task/"):]: v[0] for k, v in draw_noise(pu, harness.estimator("ufo", q=1.0), 1, 0).items()
             if k.startswith("task/")}
    xu = pu.x0()

    def unit_block() -> None:
        y = pu.init_inner(xu)
        for _ in range(unit_calls):
            y = y - 0.0 * ou.grad_y_g(xu, y, batch)

    cells.append((("unit", 0), ou, unit_block))
    for _, o, fn in cells:  # warm-up
        timed_pieces(o, fn)
    best: dict[tuple[Any, int], np.ndarray] = {}
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection landing inside a piece would be charged to it
    try:
        for _ in range(rounds):
            for key, o, fn in cells:
                t = timed_pieces(o, fn)
                if key in best and best[key].shape != t.shape:
                    raise RuntimeError(f"cost_seconds: cell {key} made different oracle calls in two rounds")
                best[key] = np.minimum(best[key], t) if key in best else t
    finally:
        if gc_was:
            gc.enable()
    draws = [key for key, _, _ in cells[:-1]]
    R = np.array([float(r) for r, _ in draws])
    XI = np.array([float(f) for _, f in draws])
    X = np.stack([np.ones_like(R), R, XI * R ** 2, XI * R], 1)
    out: dict[str, Any] = {"q": q, "r": list(rs), "rounds": rounds, "unit_calls": unit_calls,
                           "pieces": {f"r={r} xi={f}": int(best[(r, f)].shape[0]) for r, f in draws}}
    for j, clock in enumerate(("cpu", "wall")):
        T = np.array([float(best[key][:, j].sum()) for key in draws])
        unit = float(best[("unit", 0)][1:, j].mean())  # piece 0 is the block's set-up before its first call
        fit = _wls(X, T, 0.02 * T)
        groups = []
        for (r, f), t in zip(draws, T):
            pred = float(fit["a"] + fit["b"] * r + f * (fit["c"] * r * r + fit["d"] * r))
            groups.append({"r": r, "xi": f, "seconds": float(t), "rel_residual": pred / float(t) - 1.0})
        out[clock] = {"groups": groups, "max_rel_residual": max(abs(g["rel_residual"]) for g in groups), **fit,
                      "unit_grad_y_g_s": unit, "c_over_half_unit": fit["c"] / (0.5 * unit)}
    return out


def seconds_rule(sec: dict[str, Any]) -> bool:
    """The claim's seconds rule on one clock's figures: c within [0.6, 1.6] x half a grad_y_g call, every (r, coin)
    group within 25% of the fit."""
    return bool(0.6 <= sec["c_over_half_unit"] <= 1.6 and sec["max_rel_residual"] < 0.25)


def load_test(runs: int = 20, size: str = "ci", loaders: int = 2, out: Callable[[str], Any] = print) -> dict[str, Any]:
    """The seconds rule under a parallel CPU load (issue 23): ``loaders`` processes ``python -c "while True: pass"``
    are started (and killed at the end, whatever happens), then ``runs`` clean and ``runs`` control measurements
    (ufo-double-exact-work) alternate, each the claim's own cost_seconds at ``size``. One JSON line per measurement
    (ratio c / (unit/2), residual, the rule, seconds taken, os.getloadavg()), then the summary. The counts half of the
    claim reads no clock (it is deterministic) and is not repeated here."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(loaders)]
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(1.0)
        for i in range(runs):
            for control in (False, True):
                t0 = time.perf_counter()
                with double_exact_work() if control else contextlib.nullcontext():
                    s = cost_seconds("constant", SECONDS_R[size], SECONDS_ROUNDS[size])
                row = {"run": i, "control": control, "ratio": float(s["cpu"]["c_over_half_unit"]),
                       "max_rel_residual": float(s["cpu"]["max_rel_residual"]),
                       "wall_ratio": float(s["wall"]["c_over_half_unit"]), "holds": seconds_rule(s["cpu"]),
                       "seconds": time.perf_counter() - t0, "loadavg_1min": os.getloadavg()[0]}
                rows.append(row)
                out(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    clean = [r for r in rows if not r["control"]]
    ctl = [r for r in rows if r["control"]]
    summary = {"runs": runs, "size": size, "loaders": loaders, "loader_pids": [p.pid for p in procs],
               "clean_pass": sum(r["holds"] for r in clean),
               "control_fail": sum(not r["holds"] for r in ctl),
               "clean_ratio_min_max": [min(r["ratio"] for r in clean), max(r["ratio"] for r in clean)],
               "control_ratio_min_max": [min(r["ratio"] for r in ctl), max(r["ratio"] for r in ctl)],
               "loadavg_1min_min_max": [min(r["loadavg_1min"] for r in rows), max(r["loadavg_1min"] for r in rows)]}
    out(json.dumps(summary))
    return summary


@harness.register_claim("ufo-expected-cost")
class UFOExpectedCost(Claim):
    citation = CITE + ", Sec. 4 (expected cost O(r + q r^2) with the O(1)-memory exact branch)"
    statement = ("With memory='constant', UFO's cost per estimate, measured two ways independently of the estimator "
                 "(oracle calls counted at the oracle layer as they execute under the coin-grouped batch; seconds one "
                 "draw at a time), fits a + b r + c q r^2 (+ d q r) on meta-linreg (dim 2): counts with every residual "
                 "within 4 standard errors and c in [0.4, 0.6] (theory 2 + r + q(r^2/2 + 3r/2): c = 1/2, b = 1); CPU "
                 "seconds with c within [0.6, 1.6] x half the time of one grad_y_g call timed on its own (theory: the "
                 "q r^2 term is r(r-1)/2 recomputing grad_y_g calls) and every (r, coin) group within 25% of the fit. "
                 "Seconds robust to load: every draw and the unit are cut into pieces at their oracle calls (~0.1 ms, "
                 "shorter than a scheduler slice), each piece's minimum over interleaved rounds is kept (12 at ci), "
                 "draws and unit through the same statistic; c/b (theory 1/2) and the wall-clock fit are reported. "
                 "Load test: python -m blobench.claims.ufo_blo --load-test 20.")
    control = ("the exact branch computed twice with the oracle counters restored (same counts, twice the work): "
               "the CPU seconds' c must leave [0.6, 1.6] x half a grad_y_g call")

    def evaluate(self, size: str, control: bool) -> Verdict:
        ctx = double_exact_work() if control else contextlib.nullcontext()
        with ctx:
            cnt = cost_counts("constant", COST_R[size], COST_Q, COST_N[size])
            secs = cost_seconds("constant", SECONDS_R[size], SECONDS_ROUNDS[size])
        sec, wall = secs["cpu"], secs["wall"]
        counts_ok = bool(0.4 <= cnt["c"] <= 0.6 and cnt["max_abs_z_residual"] < 4)
        secs_ok = seconds_rule(sec)
        lo, hi = sec["c_over_b_ci95"]
        meas = (f"counts: a={cnt['a']:.3g} b={cnt['b']:.3g} c={cnt['c']:.3g} d={cnt['d']:.3g}, max |res|/se "
                f"{cnt['max_abs_z_residual']:.2g}; CPU seconds: c = {sec['c'] * 1e6:.3g} us = {sec['c_over_half_unit']:.3g} x "
                f"(one grad_y_g / 2 = {sec['unit_grad_y_g_s'] * 5e5:.3g} us, timed alone), c/b = {sec['c_over_b']:.3g} "
                f"[{lo:.3g}, {hi:.3g}], max rel. residual {sec['max_rel_residual']:.2g}; wall clock (reported): c = "
                f"{wall['c_over_half_unit']:.3g} x unit/2, c/b = {wall['c_over_b']:.3g}")
        return Verdict(counts_ok and secs_ok, meas, "counts c = 0.5 (in [0.4, 0.6]); CPU seconds c = half a grad_y_g call "
                       "(ratio in [0.6, 1.6])",
                       {"counts": cnt, "seconds": secs, "counts_r": COST_R[size], "counts_q": COST_Q,
                        "counts_n": COST_N[size], "counts_ok": counts_ok, "seconds_ok": secs_ok})


def _peak_bytes(fn) -> int:
    """Peak live tensor bytes of fn() by blobench.measure.memory's dispatch tracker: unlike the profiler it keeps no
    per-operator event log, so the O(r^2)-operator recomputing branch at r = 1000 fits in memory."""
    from blobench.measure.memory import peak_memory

    return int(peak_memory(fn, tracker="dispatch")["peak_bytes"])


def exact_branch_memory(memory: str, rs: list[int], dim: int = 64) -> dict[str, Any]:
    """Peak tensor bytes of one maml (exact-branch) estimate on meta-linreg(dim) versus r, and its gradients."""
    peaks, grads = [], []
    for r in rs:
        p = harness.problem("meta-linreg", dim=dim, shots=2 * dim, query=dim, unroll_steps=r, unroll_lr=0.05)
        e = harness.estimator("maml", memory=memory)
        noise = {k: v[0] for k, v in e.draw(p, torch.Generator().manual_seed(0), 1).items()}
        x = p.x0()
        o = Oracles(p)
        box = {}

        def run():
            box["g"] = e.estimate(o, x, noise).grad

        run()  # warm-up
        peaks.append(_peak_bytes(run))
        grads.append(box["g"])
    return {"r": rs, "peak_bytes": peaks, "grads": grads}


@harness.register_claim("ufo-constant-memory")
class UFOConstantMemory(Claim):
    citation = CITE + ", Sec. 4 (O(1)-memory exact branch by recomputation)"
    statement = ("With memory='constant' the exact branch's peak tensor memory is flat in r (max/min < 1.5 over "
                 "r = 10..1000 at full size, 10..90 at ci) and its gradient equals the stored one (<= 1e-12), while "
                 "stored unrolling grows linearly in r.")
    control = "the same flatness rule applied to memory='stored' must fail"

    def evaluate(self, size: str, control: bool) -> Verdict:
        rs = [10, 100, 300, 1000] if size == "full" else [10, 30, 90]
        dim = 256 if size == "full" else 64
        mem = "stored" if control else "constant"
        m = exact_branch_memory(mem, rs, dim)
        peaks = m["peak_bytes"]
        ratio = max(peaks) / max(min(peaks), 1)
        ok = ratio < 1.5
        ev = {"r": rs, "peak_bytes": peaks, "ratio": ratio, "memory": mem}
        if not control:
            s = exact_branch_memory("stored", rs, dim)
            diff = max(float((a - b).abs().max()) for a, b in zip(m["grads"], s["grads"]))
            slope = float(np.polyfit(rs, s["peak_bytes"], 1)[0])
            ev.update({"stored_peak_bytes": s["peak_bytes"], "stored_bytes_per_step": slope, "max_grad_diff": diff})
            # stored must grow by at least half a state vector per step
            ok = ok and diff <= 1e-12 and slope > 0.5 * dim * 8
        meas = f"{mem}: peak bytes {dict(zip(rs, peaks))} (max/min {ratio:.2f})"
        if "stored_peak_bytes" in ev:
            meas += f"; stored: {dict(zip(rs, ev['stored_peak_bytes']))}, {ev['stored_bytes_per_step']:.0f} B/step"
        return Verdict(ok, meas, "constant: max/min < 1.5; stored: slope > 4*dim B/step; same gradient", ev)


def batched_speedup(problem: str = "sinusoid", r: int = 100, n: int = 1024, repeats: int = 5, memory: str = "stored",
                    ) -> dict[str, Any]:
    """Wall clock of harness.estimate (coin-grouped batch) for UFO q = 0.1 vs q = 1 at r inner steps, the two sides
    interleaved in one process after a warm-up, ``repeats`` times; min and median of each and of the paired ratios."""
    params = {"sinusoid": {"hidden": 32, "tasks": 64, "unroll_lr": 0.01},
              "meta-linreg": {"dim": 32, "unroll_lr": 0.01}}.get(problem, {})
    p = harness.problem(problem, unroll_steps=r, **params)
    sides = {q: harness.estimator("ufo", q=q, memory=memory) for q in (0.1, 1.0)}

    def once(e, s):
        t0 = time.perf_counter()
        harness.estimate(p, e, seed=s, n=n)
        return time.perf_counter() - t0

    for e in sides.values():
        once(e, 0)
    t = {q: [] for q in sides}
    for i in range(repeats):
        for q, e in sides.items():
            t[q].append(once(e, i + 1))
    ratios = [a / b for a, b in zip(t[0.1], t[1.0])]
    return {"problem": problem, "r": r, "n": n, "memory": memory, "repeats": repeats,
            **{f"q{q}_min_s": min(v) for q, v in t.items()}, **{f"q{q}_median_s": statistics.median(v) for q, v in t.items()},
            "ratio_min": min(ratios), "ratio_median": statistics.median(ratios)}


_COST_MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("ufo-double-exact-work", ("ufo-expected-cost",), double_exact_work),
]

MUTATIONS = MUTATIONS + _COST_MUTATIONS


def main(argv: list[str] | None = None) -> int:
    """``python -m blobench.claims.ufo_blo [problem r n repeats memory]``: issue 13's batched figure;
    ``python -m blobench.claims.ufo_blo --load-test N [--size ci|full] [--loaders K]``: ufo-expected-cost's seconds
    rule N times clean and N times under its control, with K busy processes started (and killed) alongside."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m blobench.claims.ufo_blo")
    ap.add_argument("--load-test", type=int, metavar="N", help="runs of the seconds rule, clean and control, under load")
    ap.add_argument("--size", default="ci", choices=("ci", "full"))
    ap.add_argument("--loaders", type=int, default=2, help="busy processes started for the load test (default 2)")
    ap.add_argument("speedup", nargs="*", help="batched_speedup's arguments: problem r n repeats memory")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.load_test is not None:
        if a.load_test < 1 or a.loaders < 0:
            ap.error("--load-test must be >= 1 and --loaders >= 0")
        s = load_test(a.load_test, a.size, a.loaders, out=lambda line: print(line, flush=True))
        return 0 if s["clean_pass"] == s["runs"] and s["control_fail"] == s["runs"] else 1
    v = a.speedup
    print(json.dumps(batched_speedup(*(v[:1] or ["sinusoid"]), *[int(x) for x in v[1:4]], *v[4:5])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
