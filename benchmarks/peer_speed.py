"""Per-iteration speed of blobench against benchmark_bilevel (the peer) on the peer's own instance (issue 29, item 4).

    python benchmarks/peer_speed.py speed [--solvers soba,...] [--rounds 3] [--window 16] [--windows 3] [--cache on|off|both]
        [--closed on|off|both]
    python benchmarks/peer_speed.py tiny [--rounds 5] [--steps 200]
    python benchmarks/peer_speed.py compare JAX_VENV/bin/python BB_CHECKOUT [--rounds 3] [--closed on|off|both]  # peer interleaved
    python benchmarks/peer_speed.py export OUT.npz            # the instance's arrays, for benchmarks/peer_jax.py
    python benchmarks/peer_speed.py agree PEER_ITERATES.npz   # full-batch agreement with peer_jax.py iterates

``speed``: blobench's ``outer_loop`` on ``simulated-quadratic`` (benchmark_bilevel's ``simulated`` quadratic: n = m = 1024,
inner dimension 100, outer dimension 10, seed 2442; numpy's random numbers), each solver with the peer's default
parameters (minibatch 64, 10 inner / Neumann steps, the peer's periods; ``MAPPING``) and, by default, the peer's
sampler (contiguous blocks of 64 rows in a shuffled order; ``--sampler uniform``: blobench's uniform indices, whose
rows are gathered). The solvers run interleaved,
round after round; in each run the outer loop records every ``window`` steps and the seconds of windows 2.. (the first
holds the first call: full passes, memory set-up) give seconds per iteration; min and median over all windows of all
rounds. What is timed is the outer loop's own ``seconds`` column: the estimator's step, its oracle calls (reading the
minibatch's rows included), counting and the x update; the ground truth evaluated at each record and the draws made
up front are not timed (``blobench.measure.outer``). The peer's numbers are fixed reference figures (``PEER``: JAX is
no dependency of blobench), measured with ``benchmarks/peer_jax.py speed`` on the same arrays.

``tiny``: per-call overhead, SOBA on a 2 x 2 deterministic instance (``simulated-quadratic`` with n = m = 4,
dim_inner = dim_outer = 2, full batch), blobench's ``outer_loop`` against hand-written torch loops doing the same math
on the same problem object: (a) torch.autograd for grad_y g, grad f and the joint HV/JV product (what a torch user
writes), (b) closed-form matrix-vector products (no autograd at all). blobench runs twice: with the problem's
closed-form oracles (the default) and with autograd at every call (``Oracles.CLOSED_FORMS = False``); each is set
against the hand-written loop doing the same kind of work. Interleaved, min and median over rounds.

Wall-clock figures depend on the host; ratios measured interleaved in one process are what to compare.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.measure.outer import outer_loop
from blobench.problems.simulated_quadratic import SimulatedQuadratic

SOLVERS = ("soba", "saba", "srba", "amigo", "stocbio", "mrbo", "vrbo", "fsla", "f2sa")

#: blobench parameters doing the peer's per-iteration work (its defaults: step_size 0.1, outer_ratio 1, batch 64,
#: n_inner_steps = n_shia_steps = 10; SRBA's period (n + m) * 0.5 / 64 = 16, VRBO's (n + m) * 128 / 64 = 4096).
#: (estimator params, outer_loop keywords; outer_lr: the peer's step_size / outer_ratio, 0.1 unless given). Schedules follow the peer where blobench has them; they do not
#: change the work of an iteration.
MAPPING: dict[str, tuple[dict, dict]] = {
    "soba": ({"batch_size": 64, "inner_lr": 0.1, "solver_lr": 0.1, "decay": 0.5}, {"schedule": "sqrt"}),
    "saba": ({"batch_size": 64, "inner_lr": 0.1, "solver_lr": 0.1}, {}),
    "srba": ({"batch_size": 64, "inner_lr": 0.1, "solver_lr": 0.1, "period": 16}, {}),
    "amigo": ({"batch_size": 64, "inner_steps": 10, "solver_steps": 10, "inner_lr": 0.1, "solver_lr": 0.1}, {}),
    "stocbio": ({"batch_size": 64, "inner_steps": 10, "solver_steps": 10, "inner_lr": 0.1, "solver_lr": 0.1}, {}),
    "mrbo": ({"batch_size": 64, "solver_steps": 10, "inner_lr": 0.1, "solver_lr": 0.1, "decay": 1 / 3, "momentum": 0.5,
              "inner_momentum": 0.5, "momentum_decay": 2 / 3}, {"schedule": "power", "power": 1 / 3}),
    "vrbo": ({"batch_size": 64, "inner_steps": 10, "solver_steps": 10, "inner_lr": 0.1, "solver_lr": 0.1,
              "period": 4096}, {}),
    "fsla": ({"batch_size": 64, "inner_lr": 0.1, "solver_lr": 0.1, "decay": 0.5, "momentum": 0.1, "momentum_decay": 0.5},
             {"schedule": "sqrt"}),
    "f2sa": ({"batch_size": 64, "inner_steps": 10, "inner_lr": 0.01, "penalized_lr": 0.01, "penalized_decay": 5 / 7,
              "inner_decay": 4 / 7, "penalty": 1.0, "penalty_growth": 0.1, "penalty_growth_decay": 1 / 7},
             {"schedule": "power", "power": 4 / 7, "outer_lr": 0.01}),
}

#: benchmark_bilevel's own solvers (JAX, float64, jitted ``one_epoch`` of 16 iterations, synchronised, compile time
#: excluded), seconds per iteration, min and median over 6 epochs, measured by ``peer_speed.py compare --rounds 3
#: --closed both`` (interleaved with blobench; docs/peer.md, "Closed-form oracles") on the arrays of
#: ``simulated-quadratic`` (defaults), benchmark_bilevel commit 3ad65dc, jax 0.10.2 (CPU). Host: the blobench
#: development machine, 2 cores, nothing else running (a quiet host: the peer's JAX uses both cores and is up to 2x
#: slower on a loaded one). Absolute figures move with the host; the interleaved ratios are what ``compare`` is for.
PEER: dict[str, dict[str, float]] = {
    "soba": {"min_s": 0.00148, "median_s": 0.00149},
    "saba": {"min_s": 0.00161, "median_s": 0.00188},
    "srba": {"min_s": 0.00355, "median_s": 0.00376},
    "amigo": {"min_s": 0.0126, "median_s": 0.013},
    "stocbio": {"min_s": 0.0126, "median_s": 0.0147},
    "mrbo": {"min_s": 0.0102, "median_s": 0.0114},
    "vrbo": {"min_s": 0.101, "median_s": 0.102},
    "fsla": {"min_s": 0.00186, "median_s": 0.00234},
    "f2sa": {"min_s": 0.00922, "median_s": 0.0103},
}
PEER_HOST = "2-core development host, quiet (nothing else running), CPU, 2026-12-06, jax 0.10.2, benchmark_bilevel 3ad65dc"


def estimator(name: str, **over):
    """blobench's estimator with the peer's parameters (``MAPPING``) and its outer-loop keywords. Parameters this
    version of the estimator lacks are dropped (before issue 29 item 3: SABA's batch_size, F2SA's schedules), and
    said once on stderr."""
    from blobench.core.registry import ESTIMATORS, discover

    discover()
    kw, loop = MAPPING[name]
    params = {**kw, **over}
    known = ESTIMATORS.get(name).params
    dropped = sorted(k for k in params if k not in known)
    if dropped and name not in _WARNED:
        _WARNED.add(name)
        print(f"note: {name} has no {', '.join(dropped)} in this version: dropped", file=sys.stderr)
    return harness.estimator(name, **{k: v for k, v in params.items() if k in known}), loop


_WARNED: set[str] = set()


def per_iteration(problem, name: str, window: int, windows: int, seed: int) -> list[float]:
    est, loop = estimator(name)
    loop = dict(loop)
    tr = outer_loop(problem, est, window * (windows + 1), loop.pop("outer_lr", 0.1), seed=seed, eval_every=window, **loop)
    s = tr.seconds
    return [(s[k + 1] - s[k]) / window for k in range(1, len(s) - 1)]


MODES = {"on": [True], "off": [False], "both": [True, False]}


def _set_modes(cache: bool, closed: bool) -> None:
    """The batch cache (``SimulatedQuadratic.CACHE_BATCH``) and the closed-form oracles (``Oracles.CLOSED_FORMS``:
    off means autograd at every oracle call, as before issue 29's closed forms)."""
    SimulatedQuadratic.CACHE_BATCH = cache
    Oracles.CLOSED_FORMS = closed


def speed(args) -> list[dict]:
    problem = SimulatedQuadratic(sampler=args.sampler)
    names = args.solvers.split(",")
    modes = [(c, k) for c in MODES[args.cache] for k in MODES[args.closed]]
    out: dict[tuple[str, bool, bool], list[float]] = {(n, c, k): [] for n in names for c, k in modes}
    for n in names:  # warm-up: first calls, allocator, autograd
        for c, k in modes:
            _set_modes(c, k)
            per_iteration(problem, n, 2, 1, 0)
    for r in range(args.rounds):
        for n in names:
            for c, k in modes:
                _set_modes(c, k)
                out[(n, c, k)] += per_iteration(problem, n, args.window, args.windows, seed=r)
    _set_modes(True, True)
    rows = []
    for (n, c, k), ts in out.items():
        row = {"solver": n, "cache": c, "closed": k, "min_s": min(ts), "median_s": statistics.median(ts),
               "windows": len(ts)}
        if n in PEER:
            row["ratio_min"] = row["min_s"] / PEER[n]["min_s"]
            row["ratio_median"] = row["median_s"] / PEER[n]["median_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def compare(args) -> list[dict]:
    """Peer and blobench interleaved in time: the peer's solvers compiled once in a ``peer_jax.py serve`` subprocess
    (the JAX venv), then, round after round and solver by solver, ``--epochs`` peer epochs and one blobench run."""
    import os
    import subprocess
    import tempfile

    names = args.solvers.split(",")
    problem = SimulatedQuadratic(sampler=args.sampler)
    npz = os.path.join(tempfile.mkdtemp(prefix="peer_speed_"), "sim.npz")
    problem.export(npz)
    here = os.path.dirname(os.path.abspath(__file__))
    srv = subprocess.Popen([args.jax_python, os.path.join(here, "peer_jax.py"), "serve", npz, args.checkout,
                            "--solvers", ",".join(names), "--eval-freq", str(args.eval_freq)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        info = None
        while info is None or "ready" not in info:  # skip the peer's own prints
            line = srv.stdout.readline()
            if not line:
                raise SystemExit("peer_jax.py serve ended before it was ready")
            info = json.loads(line) if line.startswith("{") else None
        print(json.dumps({"peer": info}), flush=True)
        closed = MODES[args.closed]
        for n in names:
            for k in closed:
                _set_modes(True, k)
                per_iteration(problem, n, 2, 1, 0)
        peer: dict[str, list[float]] = {n: [] for n in names}
        mine: dict[tuple[str, bool], list[float]] = {(n, k): [] for n in names for k in closed}
        for r in range(args.rounds):
            for n in names:
                srv.stdin.write(f"{n} {args.epochs}\n")
                srv.stdin.flush()
                peer[n] += json.loads(srv.stdout.readline())["per_iteration_s"]
                for k in closed:
                    _set_modes(True, k)
                    mine[(n, k)] += per_iteration(problem, n, args.window, args.windows, seed=r)
    finally:
        _set_modes(True, True)
        srv.stdin.close()
        srv.wait()
    rows = []
    for (n, k), ts in mine.items():
        row = {"solver": n, "closed": k, "blobench_min_s": min(ts), "blobench_median_s": statistics.median(ts),
               "peer_min_s": min(peer[n]), "peer_median_s": statistics.median(peer[n])}
        row["ratio_min"] = row["blobench_min_s"] / row["peer_min_s"]
        row["ratio_median"] = row["blobench_median_s"] / row["peer_median_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- tiny problem: per-call overhead --------------------------------------------------------------------------------
def _soba_autograd(p, steps: int, rho: float, gamma: float) -> torch.Tensor:
    """SOBA (Dagreou et al. 2022, Alg. 1) by hand with torch.autograd on the problem's own f and g."""
    x = p.x0().clone()
    y = torch.zeros(p.dim_y, dtype=torch.float64)
    v = torch.zeros_like(y)
    for _ in range(steps):
        xs, ys = x.requires_grad_(True), y.requires_grad_(True)
        gx, gy = torch.autograd.grad(p.outer(xs, ys), (xs, ys))
        dy = torch.autograd.grad(p.inner(xs, ys), ys, create_graph=True)[0]
        jv, hv = torch.autograd.grad(dy, (xs, ys), grad_outputs=v)
        with torch.no_grad():
            y = ys - rho * dy
            v = v - rho * (hv + gy)
            x = xs - gamma * (gx + jv)
    return x.detach()


def _soba_closed(p, steps: int, rho: float, gamma: float) -> torch.Tensor:
    """SOBA by hand with the full-batch coefficients: matrix-vector products only."""
    H, _, C, a, _ = p.fb["g"]
    P, R, D, c, e = p.fb["f"]
    x = p.x0().clone()
    y = torch.zeros(p.dim_y, dtype=torch.float64)
    v = torch.zeros_like(y)
    for _ in range(steps):
        gy_f = P @ y + D.T @ x + c
        gx_f = R @ x + D @ y + e
        dy = H @ y + C.T @ x + a
        hv, jv = H @ v, C @ v
        y, v, x = y - rho * dy, v - rho * (hv + gy_f), x - gamma * (gx_f + jv)
    return x


def tiny(args) -> dict:
    p = SimulatedQuadratic(n_inner=4, n_outer=4, dim_inner=2, dim_outer=2, stochastic=False)
    est = harness.estimator("soba", inner_lr=0.1, solver_lr=0.1)
    T = args.steps
    def mine(closed: bool) -> float:
        _set_modes(True, closed)
        try:
            return outer_loop(p, est, T, 0.1, eval_every=T).seconds[-1] / T
        finally:
            _set_modes(True, True)

    runs = {
        "blobench": lambda: mine(True),  # the problem's closed-form oracles (the default)
        "blobench_autograd": lambda: mine(False),  # autograd at every oracle call
        "torch_autograd": lambda: _timed(lambda: _soba_autograd(p, T, 0.1, 0.1)) / T,
        "torch_closed_form": lambda: _timed(lambda: _soba_closed(p, T, 0.1, 0.1)) / T,
    }
    # the same iterates (the hand-written loops check the blobench step, not just its time)
    xb = outer_loop(p, est, 20, 0.1, eval_every=20).x_final
    xa, xc = _soba_autograd(p, 20, 0.1, 0.1), _soba_closed(p, 20, 0.1, 0.1)
    agree = {"autograd": float((xb - xa).norm() / xa.norm()), "closed_form": float((xb - xc).norm() / xc.norm())}
    ts: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        f()
    for _ in range(args.rounds):
        for k, f in runs.items():
            ts[k].append(f())
    row = {k: {"min_s": min(v), "median_s": statistics.median(v)} for k, v in ts.items()}
    for me, ref in (("blobench_autograd", "torch_autograd"), ("blobench", "torch_closed_form"),
                    ("blobench", "torch_autograd")):
        row[f"ratio_{me}_vs_{ref}"] = {"min": row[me]["min_s"] / row[ref]["min_s"],
                                       "median": row[me]["median_s"] / row[ref]["median_s"]}
    row["x_rel_diff"] = agree
    print(json.dumps(row, indent=1), flush=True)
    return row


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


# -- agreement with the peer's full-batch iterates --------------------------------------------------------------------
def agree(args) -> None:
    """Largest relative difference ||x_t - x_t^peer|| / ||x_t^peer|| over the peer's full-batch iterates (t = 1..T)."""
    import numpy as np

    d = np.load(args.peer)
    p = SimulatedQuadratic(stochastic=False)
    for name in SOLVERS:
        if f"{name}/outer" not in d:
            continue
        xs_peer = torch.from_numpy(d[f"{name}/outer"])
        est, loop = estimator(name, **json.loads(args.params).get(name, {}))
        loop = dict(loop)
        lr = loop.pop("outer_lr", 0.1)
        rel = max(float((outer_loop(p, est, t, lr, eval_every=t, **loop).x_final - xs_peer[t - 1]).norm()
                        / xs_peer[t - 1].norm()) for t in range(1, xs_peer.shape[0] + 1))
        print(json.dumps({"solver": name, "steps": int(xs_peer.shape[0]), "max_rel_diff_x": rel}), flush=True)


def export(args) -> None:
    SimulatedQuadratic().export(args.out)
    print(args.out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--solvers", default=",".join(SOLVERS))
    s.add_argument("--sampler", default="blocks", choices=("blocks", "uniform"),
                   help="simulated-quadratic's minibatches: the peer's contiguous blocks, or uniform indices")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--window", type=int, default=16)
    s.add_argument("--windows", type=int, default=3)
    s.add_argument("--cache", default="on", choices=("on", "off", "both"))
    s.add_argument("--closed", default="on", choices=("on", "off", "both"),
                   help="the problem's closed-form oracles (off: autograd at every call)")
    c = sub.add_parser("compare")
    c.add_argument("jax_python", help="python of a venv with jax, jaxlib, numpy, joblib")
    c.add_argument("checkout", help="benchmark_bilevel work tree or bare git dir")
    c.add_argument("--solvers", default=",".join(SOLVERS))
    c.add_argument("--sampler", default="blocks", choices=("blocks", "uniform"),
                   help="simulated-quadratic's minibatches: the peer's contiguous blocks, or uniform indices")
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--epochs", type=int, default=2)
    c.add_argument("--eval-freq", type=int, default=16)
    c.add_argument("--window", type=int, default=16)
    c.add_argument("--windows", type=int, default=2)
    c.add_argument("--closed", default="on", choices=("on", "off", "both"),
                   help="the problem's closed-form oracles (off: autograd at every call)")
    t = sub.add_parser("tiny")
    t.add_argument("--rounds", type=int, default=7)
    t.add_argument("--steps", type=int, default=200)
    e = sub.add_parser("export")
    e.add_argument("out")
    g = sub.add_parser("agree")
    g.add_argument("peer")
    g.add_argument("--params", default="{}", help="JSON {solver: {param: value}} overrides of MAPPING")
    a = ap.parse_args()
    {"speed": speed, "compare": compare, "tiny": tiny, "export": export, "agree": agree}[a.cmd](a)
    sys.exit(0)
