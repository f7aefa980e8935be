"""Issue #6 targets, measured (not asserted): ``python -m tests.benchmarks.targets [sampling|floor|ufo|all]``.

sampling  stocBiO bias/variance on quadratic (dim 100, noise on, inner_steps 20, solver_steps 10,
          batch 16), 4096 draws: harness.estimate (vmap, chunks of 1024) vs a per-draw loop of the
          same estimator in plain torch.autograd (tests/benchmarks/baselines.py).
floor     one itd / aid-cg estimate at dim 1000 vs the same raw oracle calls back to back.
ufo       peak tensor memory of one UFO exact-branch estimate (q=1) at r=10 vs r=1000,
          memory="constant" vs "stored" (meta-quadratic).
Prints one JSON object per target.
"""
from __future__ import annotations

import json
import sys

import torch

import harness
from harness.memory import peak_memory
from harness.oracles import Oracles
from harness.sampling import draw_noise, run_draws
from harness.timing import time_call
from tests.benchmarks.baselines import oracle_floor_aid_cg, oracle_floor_itd, stocbio_autograd


def sampling(n: int = 4096, loop_draws: int | None = None) -> dict:
    p = harness.problem("quadratic", dim=100, noise=1.0)
    eta = 1.0 / p.constants["L"]
    e = harness.estimator("stocbio", inner_steps=20, solver_steps=10, batch_size=16, inner_lr=eta, solver_lr=eta)
    x = p.x0()
    noise = draw_noise(p, e, n, seed=0)
    tb = time_call(lambda: run_draws(p, e, x, noise, n, chunk=1024), repeats=3, warmup=1)
    m = loop_draws or n
    tl = time_call(lambda: [stocbio_autograd(p, x, noise, i, 20, eta, 10, eta) for i in range(m)], repeats=1, warmup=0)
    per_draw_loop = tl["median_s"] / m
    G = run_draws(p, e, x, noise, n, chunk=1024)[0]
    ref = torch.stack([stocbio_autograd(p, x, noise, i, 20, eta, 10, eta) for i in range(8)])
    return {"target": "sampling", "draws": n, "batched_s": tb["median_s"], "batched_iqr_s": tb["iqr_s"],
            "loop_draws_timed": m, "loop_s_for_n": per_draw_loop * n, "speedup": per_draw_loop * n / tb["median_s"],
            "max_abs_diff_first8": float((G[:8] - ref).abs().max()), "threads": torch.get_num_threads()}


def floor(dim: int = 1000, D: int = 20, N: int = 10) -> dict:
    p = harness.problem("quadratic", dim=dim)
    x = torch.linspace(-1, 1, dim, dtype=torch.float64)
    lr = 1.0 / p.constants["L"]
    o = Oracles(p)
    out = {"target": "floor", "dim": dim, "inner_steps": D, "solver_steps": N}
    for name, est, fl in [
        ("itd", harness.estimator("itd", inner_steps=D, inner_lr=lr), lambda: oracle_floor_itd(p, x, D, lr)),
        ("aid-cg", harness.estimator("aid-cg", inner_steps=D, solver_steps=N, inner_lr=lr),
         lambda: oracle_floor_aid_cg(p, x, D, lr, N)),
    ]:
        te = time_call(lambda: est.estimate(o, x, {}, None), repeats=15, warmup=2)
        tf = time_call(fl, repeats=15, warmup=2)
        g = est.estimate(o, x, {}, None).grad
        out[name] = {"estimate_s": te["median_s"], "estimate_iqr_s": te["iqr_s"], "floor_s": tf["median_s"],
                     "floor_iqr_s": tf["iqr_s"], "ratio": te["median_s"] / tf["median_s"],
                     # itd's floor is the same computation; aid-cg's floor makes the same calls without CG arithmetic
                     "same_result": bool(torch.allclose(g, fl(), rtol=1e-10, atol=1e-12)) if name == "itd" else None}
        # the default inner_lr (1/L) reads problem.constants, which computes ||B||_2 by an SVD each call
        est_d = harness.estimator(name, inner_steps=D, **({"solver_steps": N} if name == "aid-cg" else {}))
        td = time_call(lambda: est_d.estimate(o, x, {}, None), repeats=5, warmup=1)
        out[name]["default_lr_estimate_s"] = td["median_s"]
    return out


def ufo(rs: tuple[int, ...] = (10, 1000)) -> dict:
    out: dict = {"target": "ufo"}
    for mem in ("constant", "stored"):
        for r in rs:
            p = harness.problem("meta-quadratic", unroll_steps=r, meta_batch=1)
            e = harness.estimator("ufo", q=1.0, memory=mem)
            nz = {k: v[0] for k, v in draw_noise(p, e, 1, seed=0).items()}
            o = Oracles(p)
            m = peak_memory(lambda: e.estimate(o, p.x0(), nz, None))
            out[f"{mem}_r{r}_peak_bytes"] = m["peak_bytes"]
            out[f"{mem}_r{r}_calls"] = o.snapshot()
        out[f"{mem}_ratio"] = out[f"{mem}_r{rs[-1]}_peak_bytes"] / out[f"{mem}_r{rs[0]}_peak_bytes"]
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    args = sys.argv[2:]
    if which in ("sampling", "all"):
        print(json.dumps(sampling(loop_draws=int(args[0]) if (which == "sampling" and args) else None)), flush=True)
    if which in ("floor", "all"):
        print(json.dumps(floor()), flush=True)
    if which in ("ufo", "all"):
        # r=1000 with memory="constant" costs r(r-1)/2 = 499,500 extra grad_y g calls (minutes on a small CPU)
        print(json.dumps(ufo(tuple(int(a) for a in args) if (which == "ufo" and args) else (10, 1000))), flush=True)
