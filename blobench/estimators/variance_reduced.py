"""Variance-reduced single-loop bilevel methods on finite sums.

SABA (Dagreou, Ablin, Vaiter, Moreau, NeurIPS 2022, arXiv 2201.13409, Algorithm 2): SOBA's
directions (eqs. 4-6, see :mod:`blobench.estimators.single_loop`) with every per-sample term replaced
by its SAGA estimate (Defazio et al. 2014). With g = 1/n sum_i g_i and f = 1/m sum_j f_j, the
method keeps a memory of each term at the last point its sample was drawn,

    g-side, per i:  grad_y g_i,  grad2_yy g_i v,  grad2_xy g_i v
    f-side, per j:  grad_y f_j,  grad_x f_j

and one step draws (i, j) uniformly and uses, for each term h with memory table M,

    S[h] = h_i(x, y, v) - M[i] + 1/n sum_k M[k],       then M[i] <- h_i(x, y, v),

so D_y = S[grad_y g], D_v = S[grad2_yy g v] + S[grad_y f], D_x = S[grad_x f] + S[grad2_xy g v].
The memories start from one full pass at the first point (n grad_y g, HV, JV and m grad_x f,
grad_y f calls, counted). They live in ``Estimate.state`` with (y, v, t).

On a deterministic problem (no finite sum) SABA's directions are the exact ones and it is SOBA
with full gradients; on a stochastic problem that is not a finite sum it raises a ParameterError.

Oracle accounting (tested): per step 1 grad_x f, 1 grad_y f, 1 grad_y g, 1 HV, 1 JV; the first
step (no state) adds n grad_y g, n HV, n JV, m grad_x f, m grad_y f.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.estimator_base import INNER_LR, SOLVER_LR, batch_of, draw_batches
from blobench.estimators.single_loop import DECAY, SOBA, SingleLoopBase, single_loop_state

G_TERMS = ("gy_g", "hv", "jv")
F_TERMS = ("gy_f", "gx_f")


def _saga(new: torch.Tensor, table: torch.Tensor, idx: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(SAGA direction new - M[idx] + mean(M), the table with row idx replaced by new when ``update``)."""
    d = new - table[idx] + table.mean(0)
    if not update:
        return d, table
    rows = (torch.arange(table.shape[0]) == idx).unsqueeze(1)
    return d, torch.where(rows, new.unsqueeze(0), table)


@harness.register_estimator("saba")
class SABA(SingleLoopBase):
    """SABA: SOBA with SAGA memories of every per-sample term; needs a finite-sum problem (Dagreou et al. 2022, Alg. 2)."""

    theory = ()

    params = {"inner_lr": INNER_LR, "solver_lr": SOLVER_LR, "decay": DECAY}
    #: write the drawn sample's new terms into the memory (False only in the negative control / mutation)
    update_memory: ClassVar[bool] = True

    def draw(self, problem, generator, n):
        if problem.stochastic and problem.finite_sum is None:
            raise ParameterError(f"estimator 'saba' needs a finite-sum problem; {problem.name!r} is stochastic but "
                                 "declares no finite sum (e.g. quadratic n_samples > 0, logreg-l2 stochastic = true)")
        return draw_batches(problem, generator, n, {"sample": 0}, 1)

    def init_memory(self, oracles, x, y, v) -> dict[str, torch.Tensor]:
        """One full pass over the n inner and m outer samples at (x, y, v)."""
        n, m = oracles.finite_sum
        zero = torch.zeros(1, dtype=torch.long)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in G_TERMS + F_TERMS}
        for i in range(n):
            b = oracles.batch_at(torch.full((1,), i, dtype=torch.long), zero)
            rows["gy_g"].append(oracles.grad_y_g(x, y, b))
            hv, jv = oracles.hvp_jvp(x, y, v, b)
            rows["hv"].append(hv)
            rows["jv"].append(jv)
        for j in range(m):
            gx, gy = oracles.grad_f(x, y, oracles.batch_at(zero, torch.full((1,), j, dtype=torch.long)))
            rows["gx_f"].append(gx)
            rows["gy_f"].append(gy)
        return {f"mem/{k}": torch.stack(r).detach() for k, r in rows.items()}

    def estimate(self, oracles, x, noise, state=None):
        if oracles.finite_sum is None:  # deterministic: exact directions, SOBA with full gradients
            return SOBA.estimate(self, oracles, x, noise, state)
        y, v, t = single_loop_state(oracles, x, state)
        mem = {k: s for k, s in state.items() if k.startswith("mem/")} if state is not None else {}
        if not mem:
            mem = self.init_memory(oracles, x, y, v)
        b = batch_of(noise, "sample")
        i, j = b["i"][0], b["j"][0]
        gx, gy = oracles.grad_f(x, y, b)
        dy = oracles.grad_y_g(x, y, b)
        hv, jv = oracles.hvp_jvp(x, y, v, b)
        upd = bool(self.update_memory)
        new = {}
        s_gy_g, new["mem/gy_g"] = _saga(dy, mem["mem/gy_g"], i, upd)
        s_hv, new["mem/hv"] = _saga(hv, mem["mem/hv"], i, upd)
        s_jv, new["mem/jv"] = _saga(jv, mem["mem/jv"], i, upd)
        s_gy_f, new["mem/gy_f"] = _saga(gy, mem["mem/gy_f"], j, upd)
        s_gx_f, new["mem/gx_f"] = _saga(gx, mem["mem/gx_f"], j, upd)
        rho, rho_v = self.steps(oracles, t)
        st = {"y": (y - rho * s_gy_g).detach(), "v": (v - rho_v * (s_hv + s_gy_f)).detach(), "t": t + 1,
              **{k: m_.detach() for k, m_ in new.items()}}
        return harness.Estimate(s_gx_f + s_jv, state=st)
