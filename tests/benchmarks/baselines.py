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


def itd_autograd(problem, x: torch.Tensor, D: int, lr: float) -> torch.Tensor:
    """One ``itd`` estimate (deterministic problem, y_0 = init_inner(x) independent of x) hand-written
    with torch.autograd: the forward keeps each step's gradient graph (create_graph=True), the
    backward runs v_k = v_{k+1} - lr H_k v_{k+1}, g_x -= lr J_k v_{k+1} with one autograd.grad per step
    through that graph (Ji, Yang, Liang 2021, eq. (4))."""
    x = x.detach().requires_grad_(True)
    y = problem.init_inner(x).detach()
    steps = []
    for _ in range(D):
        y = y.detach().requires_grad_(True)
        gy = torch.autograd.grad(problem.inner(x, y, None), y, create_graph=True)[0]
        steps.append((y, gy))
        y = y - lr * gy.detach()
    y = y.detach().requires_grad_(True)
    gx, v = torch.autograd.grad(problem.outer(x, y, None), (x, y))
    for yk, gk in reversed(steps):
        jx, hy = torch.autograd.grad(gk, (x, yk), grad_outputs=v)
        gx = gx - lr * jx
        v = v - lr * hy
    return gx.detach()


def aid_cg_autograd(problem, x: torch.Tensor, D: int, lr: float, N: int) -> torch.Tensor:
    """One ``aid-cg`` estimate hand-written with torch.autograd: D GD steps, the gradient graph at y_D
    built once (create_graph=True), N CG steps with one autograd.grad HVP each, one JV through the same
    graph (Ji, Yang, Liang 2021, Alg. 1 / eq. (3)). CG in the same Hestenes-Stiefel form as the harness."""
    from blobench.core.numerics import cg

    x = x.detach().requires_grad_(True)
    y = problem.init_inner(x).detach()
    for _ in range(D):
        y = y.detach().requires_grad_(True)
        y = (y - lr * torch.autograd.grad(problem.inner(x.detach(), y, None), y)[0]).detach()
    y.requires_grad_(True)
    gx, b = torch.autograd.grad(problem.outer(x, y, None), (x, y))
    gy = torch.autograd.grad(problem.inner(x, y, None), y, create_graph=True)[0]
    v = cg(lambda p: torch.autograd.grad(gy, y, grad_outputs=p, retain_graph=True)[0], b, N)
    jv = torch.autograd.grad(gy, x, grad_outputs=v)[0]
    return (gx - jv).detach()


def aid_cg_torchopt(problem, x: torch.Tensor, D: int, lr: float, N: int) -> torch.Tensor:
    """The same hypergradient with TorchOpt's implicit differentiation (``torchopt.diff.implicit.custom_root``
    with ``linear_solve.solve_cg``, exactly N CG iterations: rtol = atol = 0): D GD steps as the root
    solver, grad_y g = 0 as the optimality condition (Blondel et al. 2022's formulation). Needs the
    ``bench`` extra (torchopt==0.7.3)."""
    from torchopt import linear_solve
    from torchopt.diff.implicit import custom_root

    gyf = torch.func.grad(problem.inner, argnums=1)

    def optimality(y, x_):  # TorchOpt differentiates it with torch.func.vjp
        return gyf(x_, y, None)

    @custom_root(optimality, argnums=1, solve=linear_solve.solve_cg(maxiter=N, rtol=0.0, atol=0.0))
    def solve(y0, x_):
        y = y0.detach()
        with torch.enable_grad():
            for _ in range(D):
                y = y.detach().requires_grad_(True)
                y = y - lr * torch.autograd.grad(problem.inner(x_.detach(), y, None), y)[0]
        return y.detach()

    x = x.detach().requires_grad_(True)
    y = solve(problem.init_inner(x).detach(), x)
    return torch.autograd.grad(problem.outer(x, y, None), x)[0].detach()
