"""benchmark_bilevel's own JAX solvers on blobench's ``simulated-quadratic`` arrays (issue 29, items 4 and 5).

NOT part of blobench and not run by its tests: JAX is no dependency of the project. Run it in a separate venv
with ``jax``, ``jaxlib``, ``numpy`` and ``joblib``, on a checkout of github.com/benchopt/benchmark_bilevel
(the solvers are imported from it unchanged; ``benchopt`` itself is replaced by a 20-line shim):

    python benchmarks/peer_speed.py export /tmp/sim.npz          # blobench's arrays (torch venv)
    /path/to/jax-venv/bin/python benchmarks/peer_jax.py speed /tmp/sim.npz BB_CHECKOUT [--repeats 7]
    /path/to/jax-venv/bin/python benchmarks/peer_jax.py iterates /tmp/sim.npz BB_CHECKOUT OUT.npz [--steps 50]

    /path/to/jax-venv/bin/python benchmarks/peer_jax.py serve /tmp/sim.npz BB_CHECKOUT   # for peer_speed.py compare

``BB_CHECKOUT`` is a work tree of benchmark_bilevel or a bare git dir (files read with ``git show HEAD:path``).
``speed`` prints one JSON line per solver: seconds per iteration (min and median over repeats) of one jitted
``one_epoch`` call of ``eval_freq`` iterations, synchronised (``block_until_ready``), compile time excluded,
float64, minibatch 64, each solver's default parameters. ``iterates`` runs every solver in full batch
(``batch_size="full"``) for ``--steps`` iterations, one iteration per ``one_epoch`` call, and saves
(inner_var, outer_var) after each, for ``peer_speed.py agree``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import types

SOLVERS = ("soba", "saba", "srba", "amigo", "stocbio", "mrbo", "vrbo", "fsla", "f2sa")
CLASSES = {"soba": "SOBA", "saba": "SABA", "srba": "SRBA", "amigo": "AmIGO", "stocbio": "StocBiO", "mrbo": "MRBO",
           "vrbo": "VRBO", "fsla": "FSLA", "f2sa": "F2SA"}
FILES = ["benchmark_utils/__init__.py", "benchmark_utils/constants.py", "benchmark_utils/sgd_inner.py",
         "benchmark_utils/hessian_approximation.py", "benchmark_utils/learning_rate_scheduler.py",
         "benchmark_utils/minibatch_sampler.py", "benchmark_utils/stochastic_jax_solver.py",
         "datasets/simulated.py", "benchmark_utils/gen_matrices.py"] + [f"solvers/{s}.py" for s in SOLVERS]


def _read(checkout: str, path: str) -> str:
    if os.path.exists(os.path.join(checkout, path)):
        with open(os.path.join(checkout, path)) as fh:
            return fh.read()
    return subprocess.run(["git", "-C", checkout, "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def _shim() -> None:
    """A minimal ``benchopt`` (safe_import_context, BaseSolver.run_once, BaseDataset, stopping criterion)."""
    bo = types.ModuleType("benchopt")

    @contextlib.contextmanager
    def safe_import_context():
        yield types.SimpleNamespace(failed_import=False)

    class BaseSolver:
        def run_once(self, n: int = 1) -> None:
            left = [n]

            def callback() -> bool:
                left[0] -= 1
                return left[0] >= 0
            self.run(callback)

    bo.safe_import_context, bo.BaseSolver, bo.BaseDataset = safe_import_context, BaseSolver, object
    sc = types.ModuleType("benchopt.stopping_criterion")
    sc.SufficientProgressCriterion = lambda **kw: None
    bo.stopping_criterion = sc
    sys.modules["benchopt"], sys.modules["benchopt.stopping_criterion"] = bo, sc


def load(checkout: str):
    tmp = tempfile.mkdtemp(prefix="peer_bb_")
    for f in FILES:
        os.makedirs(os.path.join(tmp, os.path.dirname(f)), exist_ok=True)
        with open(os.path.join(tmp, f), "w") as fh:
            fh.write(_read(checkout, f))
    for pkg in ("solvers", "datasets"):
        open(os.path.join(tmp, pkg, "__init__.py"), "w").close()
    sys.path.insert(0, tmp)
    os.chdir(tmp)  # gen_matrices' joblib cache folder "__cache__" goes there
    _shim()
    import jax

    jax.config.update("jax_enable_x64", True)
    return {s: importlib.import_module(f"solvers.{s}").Solver for s in SOLVERS}


def functions(npz: str):
    import jax.numpy as jnp
    import numpy as np
    from datasets.simulated import get_function

    d = np.load(npz)
    g = [jnp.asarray(d[k]) for k in ("g_H", "g_K", "g_C", "g_a", "g_b")]
    f = [jnp.asarray(d[k]) for k in ("f_H", "f_K", "f_C", "f_a", "f_b")]
    # benchmark_bilevel's quadratic(inner_var, outer_var, hess_inner, hess_outer, cross, linear_inner, linear_outer):
    # .5 z'Hz + .5 x'Kx + x'Cz + a'z + b'x, the same per-sample terms blobench's simulated-quadratic sums
    return get_function(*g), get_function(*f), int(d["g_H"].shape[0]), int(d["f_H"].shape[0]), \
        int(d["g_H"].shape[1]), int(d["g_K"].shape[1])


def make(cls, fns, batch_size, eval_freq, **over):
    import jax.numpy as jnp

    f_inner, f_outer, n, m, dy, dx = fns
    s = cls()
    for k, v in cls.parameters.items():
        setattr(s, k, v[0])
    s.batch_size, s.eval_freq = batch_size, eval_freq
    for k, v in over.items():
        setattr(s, k, v)
    s.set_objective(f_inner, f_outer, n, m, jnp.zeros(dy), jnp.zeros(dx))
    return s


def epoch_fn(name, s):
    """(init state, state -> state running eval_freq iterations, (inner, outer) of a state)."""
    if name == "saba":
        mem, carry = s.init()
        return (mem, carry), lambda st: s.one_epoch(st[1], st[0], s.eval_freq), lambda st: st[1]
    if name in ("srba", "vrbo"):
        carry = s.init()
        i = [0]

        def run(st):
            out = s.one_epoch(st, s.eval_freq, i[0])
            i[0] += s.eval_freq
            return out
        return carry, run, lambda st: st
    return s.init(), lambda st: s.one_epoch(st, s.eval_freq), lambda st: st


def speed(args) -> None:
    import jax
    import numpy as np

    classes, fns = load(args.checkout), functions(args.npz)
    for name in args.solvers.split(","):
        s = make(classes[name], fns, 64, args.eval_freq)
        st, run, _ = epoch_fn(name, s)
        st = jax.block_until_ready(run(st))  # compiled (and run once) outside the timing
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            st = jax.block_until_ready(run(st))
            times.append((time.perf_counter() - t0) / args.eval_freq)
        print(json.dumps({"solver": name, "min_s": min(times), "median_s": float(np.median(times)),
                          "repeats": args.repeats, "eval_freq": args.eval_freq, "jax": jax.__version__,
                          "devices": str(jax.devices())}), flush=True)


def serve(args) -> None:
    """Compile every solver, then answer stdin lines "NAME K" with one JSON line: the seconds per iteration of K
    synchronised ``one_epoch`` calls (``peer_speed.py compare`` interleaves these with blobench's runs)."""
    import jax

    classes, fns = load(args.checkout), functions(args.npz)
    ready = {}
    for name in args.solvers.split(","):
        s = make(classes[name], fns, 64, args.eval_freq)
        st, run, _ = epoch_fn(name, s)
        ready[name] = [jax.block_until_ready(run(st)), run]
    print(json.dumps({"ready": sorted(ready), "jax": jax.__version__, "devices": str(jax.devices())}), flush=True)
    for line in sys.stdin:
        name, k = line.split()
        st, run = ready[name]
        times = []
        for _ in range(int(k)):
            t0 = time.perf_counter()
            st = jax.block_until_ready(run(st))
            times.append((time.perf_counter() - t0) / args.eval_freq)
        ready[name][0] = st
        print(json.dumps({"solver": name, "per_iteration_s": times}), flush=True)


def iterates(args) -> None:
    import jax
    import numpy as np

    classes, fns = load(args.checkout), functions(args.npz)
    out = {}
    for name in args.solvers.split(","):
        # full batch as one block of n samples (an int: the peer's "full" breaks SRBA's / VRBO's period arithmetic)
        s = make(classes[name], fns, fns[2], 1, **json.loads(args.params).get(name, {}))
        st, run, get = epoch_fn(name, s)
        zs, xs = [], []
        for _ in range(args.steps):
            st = jax.block_until_ready(run(st))
            c = get(st)
            zs.append(np.asarray(c["inner_var"]))
            xs.append(np.asarray(c["outer_var"]))
        out[f"{name}/inner"], out[f"{name}/outer"] = np.stack(zs), np.stack(xs)
        print(name, "done", flush=True)
    np.savez(args.out, **out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for c in ("speed", "iterates", "serve"):
        p = sub.add_parser(c)
        p.add_argument("npz")
        p.add_argument("checkout")
        p.add_argument("--solvers", default=",".join(SOLVERS))
        if c in ("speed", "serve"):
            p.add_argument("--repeats", type=int, default=7)
            p.add_argument("--eval-freq", type=int, default=128)
        else:
            p.add_argument("out")
            p.add_argument("--steps", type=int, default=50)
            p.add_argument("--params", default="{}", help="JSON {solver: {param: value}} overrides")
    a = ap.parse_args()
    {"speed": speed, "iterates": iterates, "serve": serve}[a.cmd](a)
