"""UFO-BLO's results as executable claims.

Likhosherstov, Song, Choromanski, Davis, Weller, "Debiasing a First-order Heuristic for Approximate
Bi-level Optimization" (ICML 2021; arXiv 2006.03631 "UFO-BLO"). Each claim cites the result it
checks and has a negative control on which the same decision rule must fail.
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Callable, ContextManager, Iterator
from unittest import mock

import numpy as np
import torch

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict, memo
from blobench.measure.metrics import mean_test

CITE = "Likhosherstov et al., ICML 2021 (arXiv 2006.03631)"


# ---------------------------------------------------------------------------------------------------------
# Mutations (collected by blobench/gate/mutations.py): (name, claims that must catch it, patch -> context manager)

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


MUTATIONS: list[tuple[str, tuple[str, ...], Callable[[], ContextManager]]] = [
    ("ufo-correction-x0.8", ("ufo-unbiased",), scaled_correction),
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


# ---------------------------------------------------------------------------------------------------------
# Few-shot table (UFO-BLO Sec. 5, Table 1 on Omniglot; here sklearn digits, see blobench/problems/digits_fewshot.py)

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


def fewshot_run(spec: tuple[str, dict], size: str, seed: int, budget: float | None) -> dict[str, Any]:
    """Meta-train one estimator on digits-fewshot (5-way 1-shot; batched meta-batches through blobench.measure.outer.meta_train)
    until ``budget`` oracle calls (or ``iters`` iterations when None; at most 4 x iters), and score the equal-iteration
    snapshot and the end point on held-out test tasks. Memoised across the claim and its control."""
    name, params = spec
    key = (name, tuple(sorted(params.items())), size, seed, budget)
    if key in _FEWSHOT_CACHE:
        return _FEWSHOT_CACHE[key]
    from blobench.measure.outer import meta_train

    p, test, _ = _fewshot_setup(size)
    iters = FEWSHOT_SIZES[size]["iters"]
    run = meta_train(p, harness.estimator(name, **params), iters * (1 if budget is None else 4), FEWSHOT_META_BATCH,
                     FEWSHOT_LR, seed=1000 + seed, budget=budget, batched=True, snapshots=(iters,))
    x_it = run.snapshots.get(iters, run.x)
    out = {"acc_iters": float(p.accuracy(x_it, test).mean()), "acc_compute": float(p.accuracy(run.x, test).mean()),
           "iterations": run.iterations, "calls": run.calls[-1], "calls_at_iters": run.calls[min(iters, len(run.calls)) - 1],
           "mean_q": float(np.mean(run.q)) if run.q else None}
    _FEWSHOT_CACHE[key] = out
    return out


def fewshot_table(size: str, control: bool = False) -> dict[str, Any]:
    """The few-shot table: per arm, test accuracy (per seed, mean and 95% t-interval over seeds) after the same number
    of meta-iterations and after the same oracle budget (exact's calls at that many iterations); with ``control``
    the authors' adaptive arm is replaced by FEWSHOT_CONTROL."""
    cfg = FEWSHOT_SIZES[size]
    seeds = list(range(cfg["seeds"]))
    exact = [fewshot_run(FEWSHOT_METHODS["exact (MAML)"], size, s, None) for s in seeds]
    budget = float(np.mean([r["calls"] for r in exact]))
    rows: dict[str, dict[str, Any]] = {}
    for method, spec in FEWSHOT_METHODS.items():
        if control and method == ADAPTIVE:
            spec = FEWSHOT_CONTROL
        runs = exact if method == "exact (MAML)" else [fewshot_run(spec, size, s, budget) for s in seeds]
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
    return {**cfg, "rows": rows, "seeds": seeds, "budget_calls": budget, "init_accuracy": _fewshot_setup(size)[2],
            "problem": FEWSHOT_PROBLEM, "meta_batch": FEWSHOT_META_BATCH, "adam_lr": FEWSHOT_LR}


def _paired(rows, a: str, b: str, col: str) -> dict[str, Any]:
    d = list(np.asarray(rows[a][col]) - np.asarray(rows[b][col]))
    m, lo, hi = _t_ci(d)
    return {"mean": m, "ci": [lo, hi], "detectable_80": _detectable(d)}


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
    expected = "not reproduced"
    evidence_note = ("on the digits stand-in the authors' adaptive UFO does not beat FO by a significant margin at equal "
                     "meta-iterations, and at equal oracle budget FO is better (its extra iterations outweigh UFO's "
                     "debiasing); fixed q = 0.1 / 0.3 do no better. The figures, intervals and per-rule verdicts are "
                     "generated on every run (measured, evidence iters_rule / compute_rule).")

    def evaluate(self, size: str, control: bool) -> Verdict:
        tab = fewshot_table(size, control)
        rows = tab["rows"]
        it = _paired(rows, ADAPTIVE, "FO", "acc_iters")
        cp = _paired(rows, ADAPTIVE, "FO", "acc_compute")
        gap_fo = float(np.mean(np.asarray(rows["exact (MAML)"]["acc_iters"]) - np.asarray(rows["FO"]["acc_iters"])))
        gap_ufo = float(np.mean(np.asarray(rows["exact (MAML)"]["acc_iters"]) - np.asarray(rows[ADAPTIVE]["acc_iters"])))
        iters_ok = it["ci"][0] > 0 and gap_fo > 0 and gap_ufo < 0.5 * gap_fo
        compute_ok = cp["ci"][1] > 0
        others = {k: {"iters": _paired(rows, k, "FO", "acc_iters"), "compute": _paired(rows, k, "FO", "acc_compute")}
                  for k in rows if k.startswith("UFO") and k != ADAPTIVE}
        tab.update({"ufo_minus_fo_iters": it, "ufo_minus_fo_compute": cp, "exact_minus_fo": gap_fo,
                    "exact_minus_ufo": gap_ufo, "other_ufo_minus_fo": others, "iters_rule": iters_ok,
                    "compute_rule": compute_ok})
        fmt = lambda r, k: f"{r[k + '_mean']:.3f} [{r[k + '_ci'][0]:.3f}, {r[k + '_ci'][1]:.3f}]"  # noqa: E731
        meas = "; ".join(f"{k}{' q~%.2f' % r['mean_q'] if r['mean_q'] is not None else ''}: {fmt(r, 'acc_iters')} / "
                         f"{fmt(r, 'acc_compute')}" for k, r in rows.items())
        meas += (f" (equal iterations / equal compute); UFO(authors)-FO {it['mean']:+.3f} [{it['ci'][0]:+.3f}, "
                 f"{it['ci'][1]:+.3f}] / {cp['mean']:+.3f} [{cp['ci'][0]:+.3f}, {cp['ci'][1]:+.3f}]; exact-FO {gap_fo:+.3f}, "
                 f"exact-UFO {gap_ufo:+.3f}; detectable (80%) {it['detectable_80']:.3f} / {cp['detectable_80']:.3f}; "
                 f"init {tab['init_accuracy']:.3f}")
        return Verdict(iters_ok and compute_ok, meas,
                       "equal iterations: UFO - FO > 0 (95% CI) and exact - UFO < (exact - FO)/2; equal compute: UFO - FO "
                       "interval's upper end > 0", tab)
