"""Plain torch.autograd references for the benchmarks (the way the anchors' code computes
one hypergradient): one draw at a time, second-order terms by double backward.

``stocbio_autograd`` is stocBiO (Ji, Yang, Liang 2021, Alg. 2-3, eq. (7)) written without
torch.func or the harness's oracles; tests/test_sampling.py checks it equals the harness's
``stocbio`` draw for draw, so the benchmark compares like with like.
"""
from __future__ import annotations

import torch


def _b(noise: dict, role: str, i: int, k: int | None = None) -> dict | None:
    pre = role + "/"
    out = {key[len(pre):]: (v[i] if k is None else v[i, k]) for key, v in noise.items() if key.startswith(pre)}
    return out or None


def stocbio_autograd(problem, x: torch.Tensor, noise: dict, i: int, D: int, lr: float, Q: int, eta: float) -> torch.Tensor:
    """Draw i of stocBiO with torch.autograd.grad (cold start y_0 = init_inner(x))."""
    x = x.detach().requires_grad_(True)
    y = problem.init_inner(x).detach()
    for k in range(D):
        y = y.detach().requires_grad_(True)
        gy = torch.autograd.grad(problem.inner(x.detach(), y, _b(noise, "inner", i, k)), y)[0]
        y = (y - lr * gy).detach()
    y.requires_grad_(True)
    fo = problem.outer(x, y, _b(noise, "outer", i))
    gx, v0 = torch.autograd.grad(fo, (x, y))
    p, acc = v0, v0
    for j in range(Q):
        gy = torch.autograd.grad(problem.inner(x.detach(), y, _b(noise, "hess", i, j)), y, create_graph=True)[0]
        hp = torch.autograd.grad(gy, y, grad_outputs=p)[0]
        p = p - eta * hp
        acc = acc + p
    v = eta * acc
    gy = torch.autograd.grad(problem.inner(x, y, _b(noise, "jac", i)), y, create_graph=True)[0]
    jv = torch.autograd.grad(gy, x, grad_outputs=v)[0]
    return (gx - jv).detach()


def oracle_floor_itd(problem, x: torch.Tensor, D: int, lr: float) -> torch.Tensor:
    """The raw oracle calls one ``itd`` estimate makes (D grad_y g, D fused HV+JV, 1 grad f), back to back,
    through the same torch.func transforms, with none of the estimator's bookkeeping."""
    from torch.func import grad, vjp

    gyf = grad(problem.inner, argnums=1)
    y = problem.init_inner(x)
    traj = []
    for _ in range(D):
        traj.append(y)
        y = y - lr * gyf(x, y, None)
    gx, v = grad(problem.outer, argnums=(0, 1))(x, y, None)
    for k in range(D - 1, -1, -1):
        _, pull = vjp(lambda x_, y_: gyf(x_, y_, None), x, traj[k])
        jx, jy = pull(v)
        gx = gx - lr * jx
        v = v - lr * jy
    return gx


def oracle_floor_aid_cg(problem, x: torch.Tensor, D: int, lr: float, N: int) -> torch.Tensor:
    """The raw calls of one ``aid-cg`` estimate (D grad_y g, 1 grad f, N HV, 1 JV) back to back (no CG arithmetic)."""
    from torch.func import grad, vjp

    gyf = grad(problem.inner, argnums=1)
    y = problem.init_inner(x)
    for _ in range(D):
        y = y - lr * gyf(x, y, None)
    gx, v = grad(problem.outer, argnums=(0, 1))(x, y, None)
    for _ in range(N):  # N separate raw HV calls, as the oracle makes them
        _, pull_y = vjp(lambda y_: gyf(x, y_, None), y)
        v = pull_y(v)[0]
    _, pull_x = vjp(lambda x_: gyf(x_, y, None), x)
    return gx - pull_x(v)[0]
