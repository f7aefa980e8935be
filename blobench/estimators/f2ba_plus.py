"""F2BA+ and AccF2BA+ as the authors' public code runs them (Chen & Zhang, arXiv 2511.22331; the paper's algorithm box was
not read).

Source: the authors' code, repository ``TrueNobility303/F2BA``, file ``medium_sized/l2reg.py``, functions ``F2BA`` and
``AccF2BA`` (read at commit 0a7ded11ae8966f466623a81d2b2c12e4328efe9), and ``medium_sized/plot_l2reg_det.py``, which
labels "F2BA+" = ``F2BA`` with ``--x_momentum 0.5`` and "AccF2BA+" = ``AccF2BA`` with ``--x_momentum 0.5 --w_momentum
0.9``. In that file x is the lower-level variable and w the upper-level one; below, as everywhere in blobench, x is the
upper level and y the lower level. This is our own implementation of what that code does:

per outer step (one ``estimate``):
1. y <- z: the lower-level iterate restarts from the penalised one (``xhat.data = x.data.clone()``);
2. K = ``inner_steps`` (``--iterations``, default 10) steps of torch's SGD with Nesterov momentum ``inner_momentum``
   (``--x_momentum``: 0.5 for the "+" variants) and step ``inner_lr`` on both sequences, the momentum buffers kept
   across outer steps (the code builds ``inner_opt`` once):
   grad for y: grad_y g(x, y); grad for z: grad_y f(x, z)/lambda + grad_y g(x, z);
   torch's Nesterov SGD: b <- m b + d (b = d at the first step), p <- p - lr (d + m b);
3. the hypergradient lambda (grad_x g(x, z) - grad_x g(x, y)) (``w.grad = lmbd * gw_minus_gw_k``), plus grad_x f(x, z),
   which the code omits because its f does not depend on the upper variable (penalty ``--lmbd``, default 10).

AccF2BA+ adds the outer optimiser: torch SGD with ``nesterov=True``, momentum ``outer_momentum`` (``--w_momentum`` 0.9),
and the restart rule: after each outer step cnt += 1 and S += ||w_{k+1} - w_k||^2; if cnt * S > max(B, B0)^2 the
momentum buffer is set to zero, B <- c B, cnt = S = 0 (argparse defaults B = 10, B0 = 0.1, c = 0.99). The outer step
runs inside the estimator's state: ``estimate`` returns the Nesterov step direction d + m b, so the shared outer loop's
x - beta * estimate is torch's step; ``outer_lr`` (default 1/L_Phi, the complexity metric's default step) must be the
outer loop's step, since the restart measures ||w_{k+1} - w_k|| = beta ||d + m b||. Its estimate is therefore a step
direction, not a hypergradient estimate: use it with the outer loop (convergence, complexity), not the bias metrics.

Oracle accounting (tested): per estimate 2K grad_y g, K grad_y f, 1 grad_x f, 2 grad_x g.
"""
from __future__ import annotations

import torch

from blobench import harness
from blobench.core.estimator_base import INNER_LR, INNER_STEPS
from blobench.core.params import Param
from blobench.core.theory import BiasFloor, CostFormula

F2BA_PLUS_SOURCE = "Chen & Zhang, arXiv 2511.22331, as run by the authors' code (TrueNobility303/F2BA, medium_sized/l2reg.py)"


def f2ba_plus_cost(p) -> dict[str, int]:
    """One estimate from state=None: 2K grad_y g, K grad_y f, 1 grad_x f, 2 grad_x g (module docstring)."""
    k = int(p["inner_steps"])
    return {"grad_y_g": 2 * k, "grad_y_f": k, "grad_x_f": 1, "grad_x_g": 2}


def nesterov_sgd_step(p: torch.Tensor, d: torch.Tensor, buf: torch.Tensor | None, lr: float, m: float
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of torch.optim.SGD(nesterov=True, momentum=m, dampening=0): b <- m b + d (b = d when None), step
    d + m b. Returns (new p, new buffer); m = 0 is plain SGD (no buffer)."""
    if m == 0:
        return p - lr * d, None
    b = d.clone() if buf is None else m * buf + d
    return p - lr * (d + m * b), b


class _F2BAPlusBase(harness.Estimator):
    params = {
        "inner_steps": INNER_STEPS, "inner_lr": INNER_LR,
        "penalty": Param("float", default=10.0, low=0.0, low_open=True, doc="lambda (--lmbd, default 10)"),
        "inner_momentum": Param("float", default=0.5, low=0.0, high=1.0, high_open=True,
                                doc="Nesterov momentum of the inner SGD (--x_momentum; 0.5 for the '+' variants)"),
    }
    vmappable = False  # the momentum buffers' first step (b = d) branches on the state

    def _inner(self, oracles, x, state):
        if oracles.target.kind != "argmin":  # the penalty reformulation needs a population g (a TypeError before)
            from blobench.core.errors import ParameterError

            raise ParameterError(f"estimator {self.name!r} needs a problem-based (argmin) target; "
                                 f"{oracles.problem.name!r} is algorithm-based (its oracles need a task)")
        K, lr, lam, m = self.inner_steps(oracles), self.inner_lr(oracles), float(self.p["penalty"]), float(self.p["inner_momentum"])
        if state is None:
            z = oracles.init_inner(x)
            bz = by = None
        else:
            z, bz, by = state["z"].detach(), state.get("bz"), state.get("by")
        y = z.clone()  # xhat.data = x.data.clone()
        for _ in range(K):
            gy = oracles.grad_y_g(x, y)
            gz = oracles.grad_y_f(x, z) / lam + oracles.grad_y_g(x, z)
            y, by = nesterov_sgd_step(y, gy, by, lr, m)
            z, bz = nesterov_sgd_step(z, gz, bz, lr, m)
        d = oracles.grad_x_f(x, z) + lam * (oracles.grad_x_g(x, z) - oracles.grad_x_g(x, y))
        st = {"z": z.detach()}
        if by is not None:
            st.update(by=by.detach(), bz=bz.detach())
        return d, st


@harness.register_estimator("f2ba-plus")
class F2BAPlus(_F2BAPlusBase):
    """F2BA+ as the authors' code runs it (TrueNobility303/F2BA, medium_sized/l2reg.py, F2BA with --x_momentum 0.5):
    inner Nesterov SGD (momentum 0.5) on g and on f/lambda + g, buffers and z kept across outer steps, y restarted at z."""

    theory = (
        BiasFloor("inner_steps", F2BA_PLUS_SOURCE + "; the penalty gradient is O(1/lambda) from grad Phi (F2BA, Lemma 3.1)",
                  reason="a fixed penalty lambda leaves an O(1/lambda) bias"),
        CostFormula(f2ba_plus_cost, F2BA_PLUS_SOURCE + " (counted per outer step)"),
    )

    def estimate(self, oracles, x, noise, state=None):
        d, st = self._inner(oracles, x, state)
        return harness.Estimate(d, state=st)


@harness.register_estimator("accf2ba-plus")
class AccF2BAPlus(_F2BAPlusBase):
    """AccF2BA+ as the authors' code runs it (TrueNobility303/F2BA, medium_sized/l2reg.py, AccF2BA with --x_momentum 0.5
    --w_momentum 0.9): F2BA+ plus outer Nesterov SGD (momentum 0.9) with the restart on cnt * sum ||w_{k+1} - w_k||^2.
    Its estimate is the outer step direction (run it with the outer loop's momentum "none" and step ``outer_lr``)."""

    theory = (
        BiasFloor("inner_steps", F2BA_PLUS_SOURCE,
                  reason="the estimate is the outer Nesterov step direction d + m b, not grad Phi, and carries F2BA's "
                         "O(1/lambda) penalty bias"),
        CostFormula(f2ba_plus_cost, F2BA_PLUS_SOURCE + " (counted per outer step)"),
    )

    params = {**_F2BAPlusBase.params,
              "outer_momentum": Param("float", default=0.9, low=0.0, high=1.0, high_open=True, doc="--w_momentum (0.9)"),
              "outer_lr": Param("float", optional=True, low=0.0, low_open=True,
                                doc="the outer loop's step beta (default 1/L_Phi), for the restart's distances"),
              "restart_B": Param("float", default=10.0, low=0.0, low_open=True, doc="B (--B, default 10)"),
              "restart_B0": Param("float", default=0.1, low=0.0, low_open=True, doc="B0 (--B0, default 0.1)"),
              "restart_c": Param("float", default=0.99, low=0.0, low_open=True, doc="c (--c, default 0.99)")}

    def estimate(self, oracles, x, noise, state=None):
        d, st = self._inner(oracles, x, state)
        c = oracles.constants
        beta = self.p.get("outer_lr")
        beta = 1.0 / float(c.get("L_phi", c.get("L", 1.0))) if beta is None else float(beta)
        m = float(self.p["outer_momentum"])
        buf = None if state is None else state.get("bw")
        B = float(self.p["restart_B"]) if state is None else float(state["B"])
        cnt = 0.0 if state is None else float(state["cnt"])
        S = 0.0 if state is None else float(state["S"])
        b = d.clone() if buf is None else m * buf + d
        step = d + m * b
        cnt += 1
        S += float(beta * beta * (step @ step))
        restarted = cnt * S > max(B, float(self.p["restart_B0"])) ** 2
        if restarted:
            cnt, S, B = 0.0, 0.0, B * float(self.p["restart_c"])
            b = torch.zeros_like(b)
        st.update(bw=b.detach(), B=torch.tensor(B), cnt=torch.tensor(cnt), S=torch.tensor(S),
                  restarts=torch.tensor(float(restarted) + (0.0 if state is None else float(state["restarts"]))))
        return harness.Estimate(step, state=st)
