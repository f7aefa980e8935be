"""Recursive (SARAH / SPIDER) variance-reduced bilevel methods on finite sums: SRBA and VRBO.

Both keep, for every direction h they need, a recursive estimate d of h at the last point z it was
evaluated at, and move it with one sampled minibatch B evaluated at the new and at the old point
(SARAH, Nguyen et al. 2017; SPIDER, Fang et al. 2018):

    d_t = d_{t-1} + h(z_t; B_t) - h(z_{t-1}; B_t),                                     (recursion)

so that d_t - h(z_t) is a martingale whose increments shrink with ||z_t - z_{t-1}||; every ``period``
(q) steps d is reset to the full-batch value h(z_t) (one pass over the n inner and m outer samples).
With g = 1/n sum_i g_i and f = 1/m sum_j f_j (``problem.finite_sum``), a full pass evaluates the
oracles on consecutive chunks of ``batch_size`` samples (``oracles.batch_at``) and averages them with
weights |chunk|/n (|chunk|/m): each chunk is one counted call, so samples = calls x batch_size.

SRBA (Dagreou, Moreau, Vaiter, Ablin, "A Lower Bound and a Near-Optimal Algorithm for Bilevel
Empirical Risk Minimization", AISTATS 2024, arXiv 2302.08766, Algorithm "SRBA"): SOBA/SABA's
directions (Dagreou et al. 2022, arXiv 2201.13409, eqs. 4-6; :mod:`blobench.estimators.single_loop`)

    D_y = grad_y g(x, y),   D_v = grad2_yy g(x, y) v + grad_y f(x, y),   D_x = grad_x f(x, y) + grad2_xy g(x, y) v

estimated by the recursion with one index pair (i, j) per step (a minibatch of ``batch_size``), reset to
the full-batch directions when t = 0 mod q; then y <- y - rho D_y, v <- v - rho' D_v, and the shared outer
loop takes x <- x - gamma D_x. State: (y, v), the previous point (x, y, v)_{t-1}, the three directions, t.
Default q = round((n + m) / batch_size): one full pass costs as many samples as q single-sample steps (the
paper's Theorem takes q of order n + m with unit batches, as recalled; its rho, gamma ~ (n + m)^-1/2 are
left to the user: ``inner_lr``, ``solver_lr`` and the outer loop's step). Deviation: the paper projects v
onto a ball (a device of its analysis); here v is not projected (the iterates stay bounded on the
problems of this suite). On a deterministic problem SRBA's directions are the exact ones: SOBA with full
gradients (as SABA).

VRBO (Yang, Ji, Liang, "Provably Faster Algorithms for Bilevel Optimization", NeurIPS 2021,
arXiv 2106.04692, Algorithm 2): recursive estimates u of grad_y g and w of the stocBiO-type
hypergradient (their eq. for grad-hat f, Ji et al. 2021's Algorithm 3 with Q Hessian batches B_j)

    grad-hat f(x, y; S) = grad_x f(x, y; D_F)
                          - grad2_xy g(x, y; D_G) eta sum_{q=-1}^{Q-1} prod_{j=Q-q}^{Q} (I - eta H_j) grad_y f(x, y; D_F),

one sample set S = (D_G, D_F, B_1..B_Q) shared by the two points of each recursion step. Outer
iteration k: if k = 0 mod q, u_k, w_k are the full-batch values at (x_k, y_k) (the paper's large batch
S_1, here all n + m samples); else they are the inner loop's last estimates. Then x_{k+1} = x_k - alpha w_k,
and the inner loop runs D = ``inner_steps`` steps at x_{k+1} from y_k:

    for t < D:  u <- u + grad_y g(x_{k+1}, y~_t; S_t) - grad_y g(z_prev; S_t),   w likewise with grad-hat f,
                z_prev <- (x_{k+1}, y~_t),   y~_{t+1} = y~_t - beta u,                y_{k+1} = y~_D,

where z_prev starts as the point of the previous estimates (so the first step carries the change of x).
The outer loop owns x and alpha, so the inner loop of iteration k runs at the start of call k + 1 (which
receives x_{k+1}); the call then refreshes if k + 1 = 0 mod q and returns w_{k+1}. State: y, u, w, the
point (x, y) at which u and w are estimates, k. Deviations, stated: on a finite sum the large batch is
the whole sum; the recursion keeps the SARAH invariant (u, w estimate the directions at the last
evaluated point, used as the next previous point): between refreshes the returned w_{k+1} is the estimate
at (x_{k+1}, y~_{D-1}), the inner loop's last evaluated point, while y_{k+1} = y~_D (as benchmark_bilevel's
VRBO); the same small batch D_G serves grad_y g and the cross product. Default q: the full pass costs
about one period of small-batch steps, q = max(1, round((n + m) / (2 D batch_size))) (SPIDER's S_1 ~ q S_2
balance); a deterministic problem counts as n = m = 1, so its default q is 1. On a deterministic problem
every recursive estimate equals its exact value, and the fast path computes exactly what the recursion
does with exact batches (tested to rounding): D warm-started GD steps y~_1..y~_D on y, then grad-hat f
(warm-started AID with a (Q+1)-term Neumann series) at (x_k, y~_D) when call k refreshes (k = 0 mod q),
else at (x_k, y~_{D-1}).

Oracle accounting (tested): SRBA per step 2 grad_x f, 2 grad_y f, 2 grad_y g, 2 HV, 2 JV; a refresh step
(and the first call) ceil(n/b) grad_y g, HV, JV and ceil(m/b) grad_x f, grad_y f; deterministic: 1 each.
VRBO per call after the first 2D grad_y g, 2D grad_x f, 2D grad_y f, 2D JV, 2DQ HV, plus at a refresh
(and the first call, which runs no inner loop) ceil(n/b) grad_y g and JV, Q ceil(n/b) HV, ceil(m/b)
grad_x f and grad_y f; deterministic: D grad_y g (none on the first call), 1 grad_x f, 1 grad_y f, Q HV, 1 JV.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.estimator_base import BATCH_SIZE, INNER_LR, SOLVER_LR, SOLVER_STEPS, batch_of, draw_batches
from blobench.core.numerics import inner_gd
from blobench.core.params import Param
from blobench.estimators.single_loop import single_loop_state

PERIOD = Param("int", optional=True, low=1, doc="q: full-batch refresh of the recursive estimates every q steps "
                                               "(default: from n, m and batch_size, see the docstring)")


def require_finite_sum(name: str, problem) -> None:
    """A ParameterError for a stochastic problem that declares no finite sum (the recursion needs full passes)."""
    if problem.stochastic and problem.finite_sum is None:
        raise ParameterError(f"estimator {name!r} needs a finite-sum problem; {problem.name!r} is stochastic but "
                             "declares no finite sum (e.g. quadratic n_samples > 0, logreg-l2 stochastic = true)")


def _chunks(n: int, b: int) -> list[torch.Tensor]:
    return [torch.arange(s, min(s + b, n), dtype=torch.long) for s in range(0, n, b)]


class Lin:
    """grad_y g linearised on a minibatch, or averaged over a full pass (weights |chunk|/n): ``value`` =
    grad_y g (one counted call per chunk, only when ``value``), ``hv``/``jv``/``hv_jv`` = the weighted sums of the
    chunks' products (one HV / JV per chunk)."""

    def __init__(self, parts: list, value: bool):
        self.parts = parts
        self.value = sum(w * lin.value for w, lin in parts) if value else None

    @classmethod
    def at(cls, oracles, x, y, batch, value: bool = True, joint: bool = False) -> "Lin":
        return cls([(1.0, oracles.linearize(x, y, batch, value=value, joint=joint))], value)

    @classmethod
    def full(cls, oracles, x, y, b: int, joint: bool = False) -> "Lin":
        n, _ = oracles.finite_sum
        zero = torch.zeros(1, dtype=torch.long)
        return cls([(len(c) / n, oracles.linearize(x, y, oracles.batch_at(c, zero), value=True, joint=joint))
                    for c in _chunks(n, b)], True)

    def hv(self, p: torch.Tensor) -> torch.Tensor:
        return sum(w * lin.hv(p) for w, lin in self.parts)

    def jv(self, p: torch.Tensor) -> torch.Tensor:
        return sum(w * lin.jv(p) for w, lin in self.parts)

    def hv_jv(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hj = [(w, lin.hv_jv(p)) for w, lin in self.parts]
        return sum(w * h for w, (h, _) in hj), sum(w * j for w, (_, j) in hj)


def full_grad_f(oracles, x, y, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x f, grad_y f) of f = 1/m sum_j f_j: ceil(m/b) chunks, one grad_x f and one grad_y f each."""
    _, m = oracles.finite_sum
    zero = torch.zeros(1, dtype=torch.long)
    gs = [(len(c) / m, oracles.grad_f(x, y, oracles.batch_at(zero, c))) for c in _chunks(m, b)]
    return sum(w * gx for w, (gx, _) in gs), sum(w * gy for w, (_, gy) in gs)


def _default_period(oracles, b: int, per_step: int) -> int:
    """q = max(1, round((n + m) / (per_step b))); a deterministic problem counts as n = m = 1 (so q = 1)."""
    n, m = oracles.finite_sum or (1, 1)
    return max(1, round((n + m) / (per_step * b)))


# -- SRBA -------------------------------------------------------------------------------------------------------
@harness.register_estimator("srba")
class SRBA(harness.Estimator):
    """SRBA: SOBA's directions with SARAH recursive estimates, reset by a full pass every q steps (Dagreou et al. 2024)."""

    theory = ()

    params = {"inner_lr": INNER_LR, "solver_lr": SOLVER_LR, "batch_size": BATCH_SIZE, "period": PERIOD}
    #: d_t = d_{t-1} + h(z_t) - h(z_{t-1}) (False only in the claim's control / mutations: d_t = h(z_t), fresh minibatch)
    recursive_correction: ClassVar[bool] = True
    #: reset to the full-batch directions every q steps (False only in mutations: the first pass only)
    refresh_every_period: ClassVar[bool] = True

    def draw(self, problem, generator, n):
        require_finite_sum("srba", problem)
        return draw_batches(problem, generator, n, {"sample": 0}, self.p["batch_size"])

    def period(self, oracles) -> int:
        q = self.p.get("period")
        return int(q) if q is not None else _default_period(oracles, self.p["batch_size"], 1)

    def steps(self, oracles) -> tuple[float, float]:
        L = float(oracles.constants["L"])
        return self.p.get("inner_lr") or 1.0 / L, self.p.get("solver_lr") or 1.0 / L

    @staticmethod
    def directions(oracles, x, y, v, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(D_y, D_v, D_x) at (x, y, v) on one minibatch: 1 grad_x f, 1 grad_y f, 1 grad_y g, 1 HV, 1 JV."""
        gx, gy = oracles.grad_f(x, y, batch)
        lin = Lin.at(oracles, x, y, batch, joint=True)
        hv, jv = lin.hv_jv(v)
        return lin.value, hv + gy, gx + jv

    def full_directions(self, oracles, x, y, v) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.p["batch_size"]
        gx, gy = full_grad_f(oracles, x, y, b)
        lin = Lin.full(oracles, x, y, b, joint=True)
        hv, jv = lin.hv_jv(v)
        return lin.value, hv + gy, gx + jv

    def estimate(self, oracles, x, noise, state=None):
        y, v, t = single_loop_state(oracles, x, state)
        first = state is None or "d_x" not in state
        if oracles.finite_sum is None:  # deterministic: the exact directions (SOBA with full gradients)
            d = self.directions(oracles, x, y, v, None)
        elif first or (self.refresh_every_period and int(t) % self.period(oracles) == 0):
            d = self.full_directions(oracles, x, y, v)
        else:
            b = batch_of(noise, "sample")
            new = self.directions(oracles, x, y, v, b)
            if self.recursive_correction:
                old = self.directions(oracles, state["x_prev"].detach(), state["y_prev"].detach(),
                                      state["v_prev"].detach(), b)
                d = tuple(state[k].detach() + a - c for k, a, c in zip(("d_y", "d_v", "d_x"), new, old))
            else:
                d = new
        rho, rho_v = self.steps(oracles)
        dy, dv, dx = (t_.detach() for t_ in d)
        st = {"y": (y - rho * dy).detach(), "v": (v - rho_v * dv).detach(), "t": t + 1}
        if oracles.finite_sum is not None:
            st.update({"x_prev": x.detach(), "y_prev": y, "v_prev": v, "d_y": dy, "d_v": dv, "d_x": dx})
        return harness.Estimate(dx, state=st)


# -- VRBO -------------------------------------------------------------------------------------------------------
@harness.register_estimator("vrbo")
class VRBO(harness.Estimator):
    """VRBO: SPIDER estimates of grad_y g and of stocBiO's hypergradient, large batch every q steps, D recursive
    inner steps on y per outer iteration (Yang, Ji, Liang 2021, Alg. 2)."""

    theory = ()

    params = {"inner_steps": Param("int", default=3, low=1, doc="D: recursive inner steps on y per outer iteration"),
              "inner_lr": INNER_LR, "solver_steps": SOLVER_STEPS, "solver_lr": SOLVER_LR, "batch_size": BATCH_SIZE,
              "period": PERIOD}
    recursive_correction: ClassVar[bool] = True
    refresh_every_period: ClassVar[bool] = True

    def draw(self, problem, generator, n):
        require_finite_sum("vrbo", problem)
        D, Q = int(self.p["inner_steps"]), int(self.p["solver_steps"])
        spec = {"inner": D, "outer": D}
        if Q > 0:
            spec["hess"] = D * Q
        return draw_batches(problem, generator, n, spec, self.p["batch_size"])

    def period(self, oracles) -> int:
        q = self.p.get("period")
        return int(q) if q is not None else _default_period(oracles, self.p["batch_size"], 2 * int(self.p["inner_steps"]))

    def solver_lr(self, oracles) -> float:
        eta = self.p.get("solver_lr")
        return 1.0 / float(oracles.constants["L"]) if eta is None else float(eta)

    def hypergradient(self, oracles, outer, hv_at, jv) -> torch.Tensor:
        """grad-hat f = grad_x f - jv(eta sum_{i=0}^{Q} p_i), p_0 = grad_y f, p_{i+1} = p_i - eta hv_at(i, p_i): Q HV, 1 JV."""
        gx, gy = outer
        eta = self.solver_lr(oracles)
        p, acc = gy, gy
        for j in range(int(self.p["solver_steps"])):
            p = p - eta * hv_at(j, p)
            acc = acc + p
        return gx - jv(eta * acc)

    def small(self, oracles, x, y, noise, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_y g, grad-hat f) at (x, y) on inner step t's sample set S_t = (D_G, D_F, B_1..B_Q)."""
        def pick(role: str, k: int):
            return {key: val[k] for key, val in batch_of(noise, role).items()}

        Q = int(self.p["solver_steps"])
        lin = Lin.at(oracles, x, y, pick("inner", t))
        w = self.hypergradient(oracles, oracles.grad_f(x, y, pick("outer", t)),
                               lambda j, p: oracles.linearize(x, y, pick("hess", t * Q + j)).hv(p), lin.jv)
        return lin.value, w

    def full(self, oracles, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_y g, grad-hat f) of the whole finite sum at (x, y) (every H_j the full-batch Hessian)."""
        b = self.p["batch_size"]
        lin = Lin.full(oracles, x, y, b)
        return lin.value, self.hypergradient(oracles, full_grad_f(oracles, x, y, b), lambda j, p: lin.hv(p), lin.jv)

    def _exact(self, oracles, x, state, D: int, beta: float):
        """The recursion with exact directions (a deterministic problem): the first call evaluates at
        (x_0, y_0); call k > 0 runs D GD steps y~_1..y~_D from y_{k-1} and returns grad-hat f at (x_k, y~_{D-1}),
        the last point the inner loop evaluated, or at (x_k, y~_D) when it refreshes (k = 0 mod q), as the
        finite-sum recursion does with exact batches."""
        if state is None:
            y, k = oracles.init_inner(x), torch.zeros((), dtype=x.dtype)
            lin = Lin.at(oracles, x, y, None, value=False)
            y_next = y
        else:
            y, k = state["y"].detach(), state["k"]
            if self.refresh_every_period and int(k) % self.period(oracles) == 0:
                y, _ = inner_gd(oracles, x, y, D, beta)
                lin = Lin.at(oracles, x, y, None, value=False)
                y_next = y
            else:  # hold y~_{D-1}: its grad_y g is the inner loop's last step
                y, _ = inner_gd(oracles, x, y, D - 1, beta)
                lin = Lin.at(oracles, x, y, None, value=True)
                y_next = y - beta * lin.value
        w = self.hypergradient(oracles, oracles.grad_f(x, y, None), lambda j, p: lin.hv(p), lin.jv)
        return harness.Estimate(w, state={"y": y_next.detach(), "k": k + 1})

    def estimate(self, oracles, x, noise, state=None):
        D, beta = int(self.p["inner_steps"]), self.inner_lr(oracles)
        if oracles.finite_sum is None:  # deterministic: every recursive estimate is its exact value
            return self._exact(oracles, x, state, D, beta)
        if state is None:
            y = oracles.init_inner(x)
            u, w = self.full(oracles, x, y)
            k = torch.zeros((), dtype=x.dtype)
            xe, ye = x, y
        else:
            k = state["k"]
            y, u, w = state["y"].detach(), state["u"].detach(), state["w"].detach()
            xe, ye = state["x_eval"].detach(), state["y_eval"].detach()
            for t in range(D):
                nu, nw = self.small(oracles, x, y, noise, t)
                if self.recursive_correction:
                    ou, ow = self.small(oracles, xe, ye, noise, t)
                    u, w = u + nu - ou, w + nw - ow
                else:
                    u, w = nu, nw
                xe, ye = x, y
                y = y - beta * u
            if self.refresh_every_period and int(k) % self.period(oracles) == 0:
                u, w = self.full(oracles, x, y)
                xe, ye = x, y
        st = {"y": y.detach(), "u": u.detach(), "w": w.detach(), "x_eval": xe.detach(), "y_eval": ye.detach(),
              "k": k + 1}
        return harness.Estimate(w.detach(), state=st)

