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

Minibatches (``batch_size`` b > 1), as benchmark_bilevel's SABA runs them (solvers/saba.py with its
minibatch sampler): the n inner samples are cut into ceil(n/b) consecutive blocks B_1, B_2, ... of b rows
(the last one shorter when b does not divide n), the m outer samples likewise; one step draws an inner
block and an outer block uniformly, evaluates each term once on its block (h_B = the block's mean) and
uses S[h] = h_B - M[B] + sum_B' (|B'|/n) M[B'], then M[B] <- h_B. This is the per-sample SAGA memory
with the minibatch a block, the SAGA correction averaged over the batch: the b per-sample memories of a
block are always written together, at one point, so their mean is the block's memory, and one table row
per block holds them (b times less memory: n/b rows). With b = 1 the blocks are the rows and the
method is the per-row SABA above, bit for bit. Deviations from the peer, stated: the blocks are drawn
with replacement (the peer shuffles them once per epoch), a short last block is the true remainder with
weight |B|/n (the peer slides its window back to b rows), and the memories start from a full pass (the
peer's default ``mode_init_memory="zero"`` starts them at zero). With b > 1 the estimator is not vmapped
(a block's length depends on the drawn index): draws of one estimate run one by one.

Oracle accounting (tested): per step 1 grad_x f, 1 grad_y f, 1 grad_y g, 1 HV, 1 JV (each on one
block: samples = calls x b); the first step (no state) adds ceil(n/b) grad_y g, HV, JV and ceil(m/b)
grad_x f, grad_y f (n and m at b = 1).
"""
from __future__ import annotations

from typing import ClassVar

import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.estimator_base import INNER_LR, SOLVER_LR, batch_of, draw_batches
from blobench.core.params import Param
from blobench.estimators.single_loop import DECAY, SOBA, SingleLoopBase, single_loop_state

G_TERMS = ("gy_g", "hv", "jv")
F_TERMS = ("gy_f", "gx_f")


def _blocks(n: int, b: int) -> list[torch.Tensor]:
    """The ceil(n/b) consecutive blocks of b row indices (the last one holds the remainder)."""
    return [torch.arange(s, min(s + b, n), dtype=torch.long) for s in range(0, n, b)]


def _saga(new: torch.Tensor, table: torch.Tensor, idx: torch.Tensor, update: bool,
          weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(SAGA direction new - M[idx] + mean(M), the table with row idx replaced by new when ``update``).
    ``weights``: the rows' weights |B|/n when the blocks differ in size (None: equal rows, the plain mean)."""
    mean = table.mean(0) if weights is None else (weights.to(table).unsqueeze(1) * table).sum(0)
    d = new - table[idx] + mean
    if not update:
        return d, table
    rows = (torch.arange(table.shape[0]) == idx).unsqueeze(1)
    return d, torch.where(rows, new.unsqueeze(0), table)


@harness.register_estimator("saba")
class SABA(SingleLoopBase):
    """SABA: SOBA with SAGA memories of every per-sample term; needs a finite-sum problem (Dagreou et al. 2022, Alg. 2)."""

    theory = ()

    params = {"inner_lr": INNER_LR, "solver_lr": SOLVER_LR, "decay": DECAY,
              "batch_size": Param("int", default=1, low=1,
                                  doc="b: rows per SAGA memory block and per step (1: per-row SABA; > 1: "
                                      "benchmark_bilevel's minibatch SABA, one memory row per block of b rows)")}
    #: write the drawn sample's new terms into the memory (False only in the negative control / mutation)
    update_memory: ClassVar[bool] = True

    def __init__(self, **params):
        super().__init__(**params)
        if int(self.p["batch_size"]) > 1:
            self.vmappable = False  # a block's length depends on the drawn block index

    def draw(self, problem, generator, n):
        if problem.stochastic and problem.finite_sum is None:
            raise ParameterError(f"estimator 'saba' needs a finite-sum problem; {problem.name!r} is stochastic but "
                                 "declares no finite sum (e.g. quadratic n_samples > 0, logreg-l2 stochastic = true)")
        b = int(self.p["batch_size"])
        if b == 1 or problem.finite_sum is None:
            return draw_batches(problem, generator, n, {"sample": 0}, 1)
        n_in, n_out = problem.finite_sum
        return {"sample/block_i": torch.randint(0, -(-n_in // b), (n,), generator=generator),
                "sample/block_j": torch.randint(0, -(-n_out // b), (n,), generator=generator)}

    def _weights(self, n: int) -> torch.Tensor | None:
        """|B|/n per block, or None when every block holds b rows (the plain mean is then the weighted one)."""
        b = int(self.p["batch_size"])
        if n % b == 0:
            return None
        return torch.tensor([len(B) / n for B in _blocks(n, b)], dtype=torch.float64)

    def init_memory(self, oracles, x, y, v) -> dict[str, torch.Tensor]:
        """One full pass over the n inner and m outer samples at (x, y, v), one memory row per block of b rows."""
        n, m = oracles.finite_sum
        b = int(self.p["batch_size"])
        zero = torch.zeros(1, dtype=torch.long)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in G_TERMS + F_TERMS}
        for block in _blocks(n, b):
            bt = oracles.batch_at(block, zero)
            rows["gy_g"].append(oracles.grad_y_g(x, y, bt))
            hv, jv = oracles.hvp_jvp(x, y, v, bt)
            rows["hv"].append(hv)
            rows["jv"].append(jv)
        for block in _blocks(m, b):
            gx, gy = oracles.grad_f(x, y, oracles.batch_at(zero, block))
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
        bs = int(self.p["batch_size"])
        wg = wf = None
        if bs == 1:  # per-row SABA: one (i, j) pair, the rows are the memory's rows
            i, j = b["i"][0], b["j"][0]
            bg = bf = b
        else:  # one inner block and one outer block of bs consecutive rows
            n, m = oracles.finite_sum
            i, j = b["block_i"], b["block_j"]
            zero = torch.zeros(1, dtype=torch.long)
            bg = oracles.batch_at(_blocks(n, bs)[int(i)], zero)
            bf = oracles.batch_at(zero, _blocks(m, bs)[int(j)])
            wg, wf = self._weights(n), self._weights(m)
        gx, gy = oracles.grad_f(x, y, bf)
        dy = oracles.grad_y_g(x, y, bg)
        hv, jv = oracles.hvp_jvp(x, y, v, bg)
        upd = bool(self.update_memory)
        new = {}
        s_gy_g, new["mem/gy_g"] = _saga(dy, mem["mem/gy_g"], i, upd, wg)
        s_hv, new["mem/hv"] = _saga(hv, mem["mem/hv"], i, upd, wg)
        s_jv, new["mem/jv"] = _saga(jv, mem["mem/jv"], i, upd, wg)
        s_gy_f, new["mem/gy_f"] = _saga(gy, mem["mem/gy_f"], j, upd, wf)
        s_gx_f, new["mem/gx_f"] = _saga(gx, mem["mem/gx_f"], j, upd, wf)
        rho, rho_v = self.steps(oracles, t)
        st = {"y": (y - rho * s_gy_g).detach(), "v": (v - rho_v * (s_hv + s_gy_f)).detach(), "t": t + 1,
              **{k: m_.detach() for k, m_ in new.items()}}
        return harness.Estimate(s_gx_f + s_jv, state=st)
