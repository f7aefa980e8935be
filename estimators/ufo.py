"""MAML (exact unrolled meta-gradient) and UFO (unbiased first-order) estimators.

Likhosherstov, Song, Choromanski, Davis, Weller, "Debiasing a First-order Heuristic for
Approximate Bi-level Optimization" (ICML 2021; arXiv 2006.03631 "UFO-BLO"), Algorithm 1:
for one task, with phi_0 = init(theta), phi_j = phi_{j-1} - alpha grad L(phi_{j-1}),
    g    = prod_{j=r-1..0} (I - alpha grad^2 L(phi_j)) grad L(phi_r)   (exact, "MAML")
    g_FO = grad L(phi_r)                                              (first order, "FOM")
    g^   = g_FO + (xi / q) (g - g_FO),  xi ~ Bernoulli(q)              (UFO, eq. (5))
E g^ = g, and E||g^||^2 = ||g||^2 + (1/q - 1)||g - g_FO||^2 (Theorem 2).

The exact branch is :func:`harness.numerics.unroll_backward`: ``memory="stored"`` keeps the
trajectory (O(r) memory, r HV + r JV), ``memory="constant"`` recomputes each phi_k from phi_0
(O(1) memory in r, r(r-1)/2 extra grad_y g calls). Both give identical numbers.

Oracle accounting per draw (tested): r grad_y g (forward), 1 grad_x f + 1 grad_y f, and, only
when the exact branch fires (xi = 1): r HV + r JV, plus r(r-1)/2 grad_y g with constant memory.
Expected cost is therefore 2 + r + q (2r [+ r(r-1)/2]) = O(r + q r^2). Under vmap both branches
are computed and selected with torch.where; ``Estimate.calls`` reports the xi-weighted cost.

Adaptive q (``q="adaptive"``), after the authors' variance/compute trade-off (Sec. 4 and their
``supervised_reptile`` code): with V^2 = E||g||^2 and D^2 = E||g - g_FO||^2, the variance of UFO is
V^2 + (1/q - 1) D^2 and its cost C_FO + q C_ex; their product is minimised at
    q* = sqrt( D^2 C_FO / ((V^2 - D^2)_+ C_ex) ),   clipped to [q_floor, 1],
with C_FO = r + 2 and C_ex the exact branch's extra calls (2r, plus r(r-1)/2 with constant memory).
V^2 and D^2 are running averages (factor ``adapt_decay``) updated only when the exact branch fires,
carried between outer steps in ``Estimate.state``; until the first exact branch has fired, q = 1.
The floor ``q_floor`` (default 0.05, our choice) keeps the exact branch firing often enough for the
running estimates to stay current.
"""
from __future__ import annotations

import torch

import harness
from harness.estimator_base import INNER_LR, INNER_STEPS, batch_of, draw_batches, step_batches
from harness.numerics import inner_gd, unroll_backward
from harness.params import Param


def _is_batched(t: torch.Tensor) -> bool:
    try:
        return bool(torch._C._functorch.is_batchedtensor(t))
    except AttributeError:  # pragma: no cover - very old torch
        return True


def _unrolled(est: harness.Estimator, oracles, x, noise, stored: bool):
    """(g_FO, exact-branch closure, r, lr): the shared forward pass of maml and ufo."""
    r, lr = est.inner_steps(oracles), est.inner_lr(oracles)
    bf = step_batches(oracles, noise)
    y0 = oracles.init_inner(x)
    yr, traj = inner_gd(oracles, x, y0, r, lr, bf, keep=stored)
    gx, gy = oracles.grad_f(x, yr, batch_of(noise, "outer"))
    g_fo = gx + oracles.init_vjp(x, gy)

    def exact() -> torch.Tensor:
        cx, v0 = unroll_backward(oracles, x, traj if stored else None, y0, gy, lr, r, bf)
        return gx + cx + oracles.init_vjp(x, v0)

    return g_fo, exact, r


MEMORY = Param("str", default="stored", choices=("stored", "constant"),
               doc="exact branch: keep the trajectory (O(r) memory) or recompute it (O(1) memory, O(r^2) calls)")


@harness.register_estimator("maml")
class MAML(harness.Estimator):
    """MAML: the exact unrolled meta-gradient prod (I - alpha H_j) grad L(phi_r) (Finn et al. 2017; UFO-BLO eq. (3))."""

    params = {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "memory": MEMORY}

    def draw(self, problem, generator, n):
        return draw_batches(problem, generator, n, {"task": 0})

    def estimate(self, oracles, x, noise, state=None):
        _, exact, _ = _unrolled(self, oracles, x, noise, self.p["memory"] == "stored")
        return harness.Estimate(exact())


def _q_check(v):
    if isinstance(v, str) and v != "adaptive":
        return "q must be a probability in (0, 1] or 'adaptive'"
    if isinstance(v, float) and not (0.0 < v <= 1.0):
        return "q must be in (0, 1]"
    return None


@harness.register_estimator("ufo")
class UFO(harness.Estimator):
    """UFO-BLO: g_FO + (xi/q)(g - g_FO), xi ~ Bernoulli(q): unbiased at expected cost O(r + q r^2) (Likhosherstov et al. 2021, Alg. 1)."""

    params = {
        "inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "memory": MEMORY,
        "q": Param(("float", "str"), default=0.1, check=_q_check, doc="probability of the exact branch, or 'adaptive'"),
        "q_floor": Param("float", default=0.05, low=0, low_open=True, high=1.0, doc="adaptive q: lower bound"),
        "adapt_decay": Param("float", default=0.9, low=0, high=1, high_open=True, doc="adaptive q: running-average factor"),
        "correction_scale": Param("float", default=1.0, doc="multiplies xi/q; != 1 only for negative controls (biased UFO)"),
    }

    def draw(self, problem, generator, n):
        out = draw_batches(problem, generator, n, {"task": 0})
        out["ufo/u"] = torch.rand((n,), generator=generator, dtype=torch.float64)
        return out

    def _q(self, r: int, state) -> torch.Tensor | float:
        q = self.p["q"]
        if q != "adaptive":
            return float(q)
        if state is None:
            return 1.0
        c_fo = r + 2.0
        c_ex = 2.0 * r + (r * (r - 1) / 2.0 if self.p["memory"] == "constant" else 0.0)
        spread = torch.clamp(state["V2"] - state["D2"], min=1e-300)
        qa = torch.clamp(torch.sqrt(state["D2"] * c_fo / (spread * c_ex)), min=self.p["q_floor"], max=1.0)
        return torch.where(state["seen"] > 0, qa, torch.ones_like(qa))

    def estimate(self, oracles, x, noise, state=None):
        stored = self.p["memory"] == "stored"
        g_fo, exact, r = _unrolled(self, oracles, x, noise, stored)
        q = self._q(r, state)
        u = noise["ufo/u"]
        xi = (u < q).to(x.dtype)
        if _is_batched(u) or bool(xi):
            g = exact()
        else:  # a single draw whose coin says "first order": skip the exact branch
            g = g_fo
        est = g_fo + (self.p["correction_scale"] * xi / q) * (g - g_fo)
        extra_gyg = r * (r - 1) / 2 if not stored else 0
        calls = {"hvp": xi * r, "jvp": xi * r, "grad_y_g": r + xi * extra_gyg,
                 "grad_x_f": torch.ones_like(xi), "grad_y_f": torch.ones_like(xi)}
        new_state = None
        if self.p["q"] == "adaptive":
            d = self.p["adapt_decay"]
            v2, d2 = (g @ g), ((g - g_fo) @ (g - g_fo))
            if state is None:
                zero = torch.zeros_like(v2)
                state = {"V2": zero, "D2": zero, "seen": zero}
            fired = xi > 0
            first = state["seen"] <= 0
            upd = lambda old, new: torch.where(first, new, d * old + (1 - d) * new)  # noqa: E731
            new_state = {"V2": torch.where(fired, upd(state["V2"], v2), state["V2"]),
                         "D2": torch.where(fired, upd(state["D2"], d2), state["D2"]),
                         "seen": torch.where(fired, torch.ones_like(v2), state["seen"]),
                         "q": torch.as_tensor(q, dtype=x.dtype)}
        return harness.Estimate(est, calls, new_state)
