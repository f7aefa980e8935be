"""The problem battery: a problem's ground truth checked against itself (issue 22, item 2).

Each check returns a :class:`~blobench.gate.verify.common.Check`. Rules and tolerances (docs/verify.md):

- ``basics``: x0 has shape (dim_x,) and a floating dtype, hypergradient(x0) has shape (dim_x,), value(x0) is a
  finite float, ``constants`` maps names to finite floats and declares mu and L together (a problem declaring
  one without the other fails here with one line, instead of a later ``KeyError: 'L'``), ``on(device)`` moves
  the oracles (CUDA where present).
- ``hypergradient_fd``: <d, grad Phi(x)> agrees with a Richardson-extrapolated central difference of
  ``value`` along ``fd_dirs`` random unit directions at x0 and at a random point: relative error
  <= 1e-5 (of ||grad Phi(x)|| + 1e-8).
- ``inner_stationary``: ||grad_y g(x, y*(x))|| <= 1e-8 (1 + ||grad_y g(x, y_0)||) where inner_solution exists.
- ``stationary_points``: ||grad Phi(x*)|| <= 1e-7 (1 + ||grad Phi(x0)||) at each declared point.
- ``constants``: declared mu <= lambda_min(grad2_yy g) and lambda_max <= L (|lambda| <= L for a problem declaring
  L without mu) at x0 and a random x, at y_0 and y*(x) (on 4 sampled tasks for an algorithm-based problem);
  dense eigvalsh up to dim_y = 400, Lanczos (scipy eigsh on Hessian-vector products) above. Relative slack 1e-6.
- ``minibatch_mean`` (stochastic problem-based problems): the mean over N one-sample batches of grad_y g,
  grad_y f and grad_x f equals the full oracle (batch None): every coordinate within z * se, z the two-sided
  normal quantile at 1e-3 / (number of coordinates) (Bonferroni), plus 1e-10.
- ``noise_level`` (problems declaring constants["noise"]): the per-coordinate standard deviation of grad_y f
  from one sample, averaged over coordinates, is within 10 % of the declared noise.
- ``sample_deterministic``: sample() with the same seed gives identical tensors, another seed different ones.
- ``closed_forms`` (problems giving closed-form oracles, ``Problem.closed_grad`` / ``closed_second``): grad_x f,
  grad_y f, grad_x g, grad_y g (alone and in pairs), HV, JV (alone and together) and a linearisation's value and
  products (joint and not) from the closed forms agree with
  autograd's on the same problem within 1e-12 of autograd's norm (+ 1e-12), at x0 and a random x, two y, the full
  batch and two sampled minibatches; "bit for bit" when every one is identical.
"""
from __future__ import annotations

import math
import os

import torch

from blobench.gate.verify.common import FAIL, NA, PASS, Check, Size

FD_RTOL = 1e-5
STAT_RTOL = 1e-8
SP_RTOL = 1e-7
CONST_RTOL = 1e-6
DENSE_MAX = 400
FAMILY_ALPHA = 1e-3
NOISE_RTOL = 0.10
CLOSED_RTOL = 1e-12


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.norm(t.double()))


def _random_x(problem, seed: int = 1) -> torch.Tensor:
    x0 = problem.x0()
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    return x0 + 0.5 * d / max(1.0, math.sqrt(x0.numel()))


def check_basics(name: str, problem) -> Check:
    c = Check(name, "problem", "basics", name, PASS, expected="shapes, dtypes, constants {mu, L} together, device move",
              source="DESIGN.md, Core objects")
    issues = []
    x0 = problem.x0()
    if not isinstance(x0, torch.Tensor) or tuple(x0.shape) != (problem.dim_x,):
        issues.append(f"x0 has shape {tuple(getattr(x0, 'shape', ()))}, expected ({problem.dim_x},)")
    elif not x0.is_floating_point():
        issues.append(f"x0 has dtype {x0.dtype}, expected a floating dtype")
    else:
        g = problem.hypergradient(x0)
        if tuple(g.shape) != (problem.dim_x,):
            issues.append(f"hypergradient(x0) has shape {tuple(g.shape)}, expected ({problem.dim_x},)")
        v = problem.value(x0)
        if not isinstance(v, (float, int)) and not (isinstance(v, torch.Tensor) and v.numel() == 1):
            issues.append(f"value(x0) is {type(v).__name__}, expected a float")
        elif not math.isfinite(float(v)):
            issues.append("value(x0) is not finite")
    try:
        cst = problem.constants
    except Exception as exc:  # noqa: BLE001 - a plugin's constants raising is the finding
        cst = {}
        issues.append(f"constants raised {type(exc).__name__}: {exc}")
    if not isinstance(cst, dict):
        issues.append(f"constants is {type(cst).__name__}, expected a dict")
    else:
        for k in ("mu", "L"):
            other = "L" if k == "mu" else "mu"
            if k in cst and other not in cst and not (k == "L" and problem.target.kind == "unrolled"):
                issues.append(f"constants declares {k!r} but not {other!r}")
        for k, v in cst.items():
            try:
                if not math.isfinite(float(v)):
                    issues.append(f"constants[{k!r}] is not finite")
            except (TypeError, ValueError):
                issues.append(f"constants[{k!r}] = {v!r} is not a number")
    if torch.cuda.is_available() and not issues:
        q = problem.on("cuda")
        y0 = problem.init_inner(x0).cuda()
        b = problem.sample(torch.Generator().manual_seed(0), 1)
        b = None if b is None else {k: v[0].cuda() for k, v in b.items()}
        val = q.inner(x0.cuda(), y0, b)
        if val.device.type != "cuda":
            issues.append("inner(x, y) on CUDA inputs returned a tensor on the CPU after on('cuda')")
    elif os.environ.get("BLOBENCH_REQUIRE_GPU") == "1":
        issues.append("BLOBENCH_REQUIRE_GPU=1 but no CUDA device")
    c.verdict = FAIL if issues else PASS
    c.measured = "; ".join(issues) if issues else "ok" + (" (cuda move checked)" if torch.cuda.is_available() else " (no CUDA here)")
    return c


def _fd_directional(problem, x: torch.Tensor, d: torch.Tensor, h: float) -> float:
    def D(s):
        return (float(problem.value(x + s * d)) - float(problem.value(x - s * d))) / (2 * s)

    return (4 * D(h / 2) - D(h)) / 3  # Richardson: O(h^4)


def check_hypergradient_fd(name: str, problem, size: Size) -> Check:
    c = Check(name, "problem", "hypergradient_fd", name, PASS, expected=f"rel. error <= {FD_RTOL:g}",
              source="central differences of value(), Richardson-extrapolated")
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for x in (problem.x0(), _random_x(problem)):
        g = problem.hypergradient(x).double()
        scale = _norm(g) + 1e-8
        h = 1e-3 * max(1.0, _norm(x) / math.sqrt(x.numel()))
        for _ in range(size.fd_dirs):
            d = torch.randn(x.shape, generator=gen, dtype=x.dtype)
            d = d / torch.linalg.norm(d)
            fd = _fd_directional(problem, x, d, h)
            worst = max(worst, abs(fd - float(d.double() @ g)) / scale)
    c.value = worst
    c.measured = f"max rel. error {worst:.2e} over {2 * size.fd_dirs} directions"
    c.verdict = PASS if worst <= FD_RTOL else FAIL
    return c


def _gyg(problem, x, y, batch=None):
    from torch.func import grad

    return grad(problem.inner, argnums=1)(x, y, batch)


def check_inner_stationary(name: str, problem) -> Check:
    c = Check(name, "problem", "inner_stationary", name, PASS, expected=f"||grad_y g(x, y*)|| <= {STAT_RTOL:g} (1 + ||grad_y g(x, y0)||)",
              source="definition of y*(x) = argmin_y g")
    if problem.target.kind != "argmin":
        c.verdict, c.measured = NA, "algorithm-based target (no argmin)"
        return c
    worst = 0.0
    for x in (problem.x0(), _random_x(problem)):
        try:
            ys = problem.inner_solution(x)
        except NotImplementedError:
            c.verdict, c.measured = NA, "no inner_solution"
            return c
        r = _norm(_gyg(problem, x, ys)) / (1 + _norm(_gyg(problem, x, problem.init_inner(x))))
        worst = max(worst, r)
    c.value = worst
    c.measured = f"{worst:.2e}"
    c.verdict = PASS if worst <= STAT_RTOL else FAIL
    return c


def check_stationary_points(name: str, problem) -> Check:
    c = Check(name, "problem", "stationary_points", name, PASS, expected=f"||grad Phi(x*)|| <= {SP_RTOL:g} (1 + ||grad Phi(x0)||)",
              source="declared stationary_points()")
    sps = problem.stationary_points()
    if not sps:
        c.verdict, c.measured = NA, "none declared"
        return c
    ref = 1 + _norm(problem.hypergradient(problem.x0()))
    worst = max(_norm(problem.hypergradient(s)) / ref for s in sps)
    c.value = worst
    c.measured = f"{worst:.2e} over {len(sps)} point(s)"
    c.verdict = PASS if worst <= SP_RTOL else FAIL
    return c


def hessian_extremes(problem, x, y, batch=None) -> tuple[float, float]:
    """(lambda_min, lambda_max) of grad2_yy g(x, y; batch): dense below DENSE_MAX, else Lanczos (ARPACK)."""
    from torch.func import hessian

    n = problem.dim_y
    if n <= DENSE_MAX:
        H = hessian(problem.inner, argnums=1)(x, y, batch).double().reshape(n, n)
        ev = torch.linalg.eigvalsh(0.5 * (H + H.T))
        return float(ev[0]), float(ev[-1])
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch.func import grad, vjp

    gy = grad(problem.inner, argnums=1)
    _, pull = vjp(lambda y_: gy(x, y_, batch), y)

    def mv(v):
        return pull(torch.as_tensor(np.asarray(v).reshape(-1), dtype=y.dtype))[0].double().numpy()

    op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    lo = float(eigsh(op, k=1, which="SA", tol=1e-10, return_eigenvectors=False)[0])
    hi = float(eigsh(op, k=1, which="LA", tol=1e-10, return_eigenvectors=False)[0])
    return lo, hi


def check_constants(name: str, problem) -> Check:
    cst = problem.constants if isinstance(problem.constants, dict) else {}
    mu, L = cst.get("mu"), cst.get("L")
    exp = " and ".join(s for s in ((f"mu={mu:g} <= lambda_min" if mu is not None else ""),
                                   (f"lambda_max <= L={L:g}" if L is not None else "")) if s)
    c = Check(name, "problem", "constants", name, PASS, expected=exp or "declared constants",
              source="declared constants vs grad2_yy g spectrum (dense or Lanczos)")
    if mu is None and L is None:
        c.verdict, c.measured = NA, "declares neither mu nor L"
        return c
    batches = [None]
    if problem.stochastic and problem.target.kind == "unrolled":
        b = problem.sample(torch.Generator().manual_seed(0), 4)
        batches = [{k: v[i] for k, v in b.items()} for i in range(4)]
    lo, hi = math.inf, -math.inf
    for x in (problem.x0(), _random_x(problem)):
        ys = [problem.init_inner(x)]
        if problem.target.kind == "argmin":
            try:
                ys.append(problem.inner_solution(x))
            except NotImplementedError:
                pass
        for y in ys:
            for b in batches:
                a, z = hessian_extremes(problem, x, y, b)
                lo, hi = min(lo, a), max(hi, z)
    issues = []
    if mu is not None and float(mu) > lo * (1 + CONST_RTOL) + 1e-12:
        issues.append(f"mu={float(mu):.4g} > lambda_min={lo:.4g}")
    if L is not None:
        top = hi if mu is not None else max(abs(lo), abs(hi))
        if top > float(L) * (1 + CONST_RTOL) + 1e-12:
            issues.append(f"lambda_max={top:.4g} > L={float(L):.4g}")
    c.measured = f"lambda in [{lo:.4g}, {hi:.4g}]" + (": " + "; ".join(issues) if issues else "")
    c.value = lo / float(mu) if mu else hi / float(L)
    c.verdict = FAIL if issues else PASS
    return c


def _per_sample(problem, fn, x, y, batch):
    from torch.func import grad, vmap

    return vmap(grad(fn, argnums=1 if fn.__name__ != "_gx" else 0), in_dims=(None, None, 0))(x, y, batch)


def check_minibatch_mean(name: str, problem, size: Size) -> Check:
    from scipy.stats import norm
    from torch.func import grad, vmap

    c = Check(name, "problem", "minibatch_mean", name, PASS, expected=f"|mean - full| <= z se (family alpha {FAMILY_ALPHA:g}, Bonferroni)",
              source="E[oracle(batch)] = oracle(population)")
    if not problem.stochastic or problem.target.kind != "argmin":
        c.verdict, c.measured = NA, "deterministic" if not problem.stochastic else "algorithm-based target (no population oracle)"
        return c
    x = _random_x(problem)
    y = problem.init_inner(x) + 0.1
    b = problem.sample(torch.Generator().manual_seed(0), size.stoch_samples, 1)
    oracles = {"grad_y_g": grad(problem.inner, argnums=1), "grad_y_f": grad(problem.outer, argnums=1),
               "grad_x_f": grad(problem.outer, argnums=0)}
    m = sum(problem.dim_y if k != "grad_x_f" else problem.dim_x for k in oracles)
    z = float(norm.ppf(1 - FAMILY_ALPHA / (2 * m)))
    worst, where = 0.0, ""
    for k, fn in oracles.items():
        s = vmap(fn, in_dims=(None, None, 0))(x, y, b).double()
        full = fn(x, y, None).double()
        se = s.std(0) / math.sqrt(s.shape[0])
        r = float(((s.mean(0) - full).abs() / (z * se + 1e-10)).max())
        if r > worst:
            worst, where = r, k
    c.value = worst
    c.measured = f"max |mean - full| / (z se) = {worst:.3g} ({where})"
    c.verdict = PASS if worst <= 1 else FAIL
    return c


def check_noise_level(name: str, problem, size: Size) -> Check:
    from torch.func import grad, vmap

    c = Check(name, "problem", "noise_level", name, PASS, expected=f"within {NOISE_RTOL:.0%} of constants['noise']",
              source="declared constants['noise']: per-coordinate std of grad_y f from one sample")
    cst = problem.constants
    if not problem.stochastic or "noise" not in cst or problem.target.kind != "argmin":
        c.verdict, c.measured = NA, "declares no noise level" if "noise" not in cst else "deterministic"
        return c
    x = problem.x0()
    y = problem.init_inner(x)
    b = problem.sample(torch.Generator().manual_seed(1), size.stoch_samples, 1)
    s = vmap(grad(problem.outer, argnums=1), in_dims=(None, None, 0))(x, y, b).double()
    meas = float(s.var(0).mean().sqrt())
    dec = float(cst["noise"])
    c.value = meas / dec if dec else float("inf")
    c.measured = f"{meas:.4g} (declared {dec:.4g})"
    c.verdict = PASS if abs(meas - dec) <= NOISE_RTOL * dec else FAIL
    return c


def check_sample_deterministic(name: str, problem) -> Check:
    c = Check(name, "problem", "sample_deterministic", name, PASS, expected="same seed: identical; other seed: different",
              source="DESIGN.md: all randomness from a seeded generator")
    if not problem.stochastic:
        c.verdict, c.measured = NA, "deterministic"
        return c
    a = problem.sample(torch.Generator().manual_seed(7), 8)
    b = problem.sample(torch.Generator().manual_seed(7), 8)
    d = problem.sample(torch.Generator().manual_seed(8), 8)
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    diff = any(not torch.equal(a[k], d[k]) for k in a if a[k].is_floating_point() or a[k].numel() > 1)
    c.verdict = PASS if same and diff else FAIL
    c.measured = "ok" if same and diff else ("same seed gave different batches" if not same else "another seed gave the same batches")
    return c


def oracle_values(oracles, x, y, v, batch) -> dict[str, torch.Tensor]:
    """Every oracle entry point the closed forms can replace, at one point: each gradient alone and in pairs
    (``grad_f``, ``grad_g``: autograd takes another path for them), HV, JV and both at once, and a linearisation's
    value and products, joint and not."""
    out = {"grad_x f": oracles.grad_x_f(x, y, batch), "grad_y f": oracles.grad_y_f(x, y, batch),
           "grad_x g": oracles.grad_x_g(x, y, batch), "grad_y g": oracles.grad_y_g(x, y, batch)}
    out["grad_f (x)"], out["grad_f (y)"] = oracles.grad_f(x, y, batch)
    out["grad_g (x)"], out["grad_g (y)"] = oracles.grad_g(x, y, batch)
    out["HV"], out["JV"] = oracles.hvp(x, y, v, batch), oracles.jvp(x, y, v, batch)
    out["hvp_jvp (HV)"], out["hvp_jvp (JV)"] = oracles.hvp_jvp(x, y, v, batch)
    for joint in (False, True):
        lin, at = oracles.linearize(x, y, batch, value=True, joint=joint), f"linearized (joint={joint})"
        out[f"{at} grad_y g"], out[f"{at} HV"], out[f"{at} JV"] = lin.value, lin.hv(v), lin.jv(v)
        out[f"{at} hv_jv (HV)"], out[f"{at} hv_jv (JV)"] = lin.hv_jv(v)
    return out


def check_closed_forms(name: str, problem) -> Check:
    """A problem's closed-form oracles (``Problem.closed_grad`` / ``closed_second``) against autograd on the same
    problem, at x0 and a random x, y_0 + 0.1 and a random y, at the full batch and at two sampled minibatches."""
    from blobench.core.oracles import Oracles, closed_forms

    c = Check(name, "problem", "closed_forms", name, PASS,
              expected=f"|closed - autograd| <= {CLOSED_RTOL:g} (||autograd|| + 1e-12), every oracle",
              source="Problem.closed_grad / closed_second: the oracles' closed forms compute what autograd computes")
    if not closed_forms(problem):
        c.verdict, c.measured = NA, "gives no closed-form oracles"
        return c
    auto, closed = Oracles(problem), Oracles(problem)
    auto._closed = False
    g = torch.Generator().manual_seed(3)
    batches: list = [None]
    if problem.stochastic and problem.target.kind == "argmin":
        nz = problem.sample(g, 2, 1)
        batches += [{k: t[i] for k, t in nz.items()} for i in range(2)]
    worst, where, identical = 0.0, "", True
    for x in (problem.x0(), _random_x(problem)):
        y0 = problem.init_inner(x)
        for y in (y0 + 0.1, y0 + torch.randn(y0.shape, generator=g, dtype=y0.dtype)):
            v = torch.randn(y0.shape, generator=g, dtype=y0.dtype)
            for b in batches:
                want, got = oracle_values(auto, x, y, v, b), oracle_values(closed, x, y, v, b)
                for k in want:
                    if got[k].shape != want[k].shape:
                        c.verdict, c.measured = FAIL, f"{k}: shape {tuple(got[k].shape)}, autograd {tuple(want[k].shape)}"
                        return c
                    identical &= bool(torch.equal(got[k], want[k]))
                    r = _norm(got[k] - want[k]) / (_norm(want[k]) + 1e-12)
                    if r > worst:
                        worst, where = r, k
    c.value = worst
    c.measured = "bit for bit" if identical else f"max relative difference {worst:.3g} ({where})"
    c.verdict = PASS if worst <= CLOSED_RTOL else FAIL
    return c


PROPERTIES = ("basics", "hypergradient_fd", "inner_stationary", "stationary_points", "constants", "minibatch_mean",
              "noise_level", "sample_deterministic", "closed_forms")


def problem_battery(name: str, problem, size: Size) -> list[Check]:
    """Every problem check on one problem instance (``name`` labels the rows)."""
    from blobench.gate.verify.common import ERROR, timed

    checks = [lambda: check_basics(name, problem), lambda: check_hypergradient_fd(name, problem, size),
              lambda: check_inner_stationary(name, problem), lambda: check_stationary_points(name, problem),
              lambda: check_constants(name, problem), lambda: check_minibatch_mean(name, problem, size),
              lambda: check_noise_level(name, problem, size), lambda: check_sample_deterministic(name, problem),
              lambda: check_closed_forms(name, problem)]
    props = list(PROPERTIES)
    out = []
    for prop, fn in zip(props, checks):
        try:
            out.append(timed(fn))
        except Exception as exc:  # noqa: BLE001 - a problem raising inside a check is a failure, one line
            out.append(Check(name, "problem", prop, name, ERROR, measured=f"{type(exc).__name__}: {exc}"[:300]))
    return out
