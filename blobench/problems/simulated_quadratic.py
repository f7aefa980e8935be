"""benchmark_bilevel's ``simulated`` quadratic (the peer's own instance, issue 29), as a finite sum with exact truth.

github.com/benchopt/benchmark_bilevel, ``datasets/simulated.py`` and ``benchmark_utils/gen_matrices.py``: n inner and
m outer samples, each a quadratic in (x, y) with its own dense coefficients,

    g_i(x, y) = 1/2 y'H_i y + 1/2 x'K_i x + x'C_i y + a_i'y + b_i'x       (i < n, the inner problem)
    f_j(x, y) = 1/2 y'P_j y + 1/2 x'R_j x + x'D_j y + c_j'y + e_j'x       (j < m, the outer problem)

g = 1/n sum_i g_i, f = 1/m sum_j f_j (the peer's ``quadratic`` and ``batched_quadratic``; a minibatch is the mean of
its samples' terms). Each table is built by the peer's recipe (``gen_matrices``): H_i = u_i u_i^T with
u_i ~ N(0, A^2), A = U diag(logspace(log10(mu)/2, log10(L)/2)) U^T (U from the SVD of a Gaussian vector), so
E[H_i] has spectrum [mu, L]; K_i likewise with one zero eigenvalue; C_i = U D w_i (w_i V^T) with D's diagonal
logspace(log10(mu), log10(L_cross)); a_i, b_i ~ N(0, I). Like the peer, the pair of tables is redrawn (up to 20
times) until the Hessian of Phi at the full batch is positive definite (smallest eigenvalue >= 1e-12).

The random numbers are numpy's (``default_rng(seed)``), not JAX's: the instance is the peer's in law, not in bits.
For a bit-level comparison the peer is run on these arrays (``benchmarks/peer_jax.py``, fed by
``benchmarks/peer_speed.py export``).

Ground truth, exact in float64 (every quantity is a closed form in the full-batch means Hg, Kg, Cg, ag, bg and
Hf, Kf, Cf, af, bf): y*(x) = -Hg^-1 (Cg' x + ag), J = dy*/dx = -Hg^-1 Cg',
grad Phi(x) = Kf x + Cf y* + bf + J' (Hf y* + Cf' x + af); Phi is quadratic with Hessian
J'Hf J + Kf + Cf J + J'Cf', whose unique minimiser is the stationary point.

A minibatch is a set of sample indices ("i" inner, "j" outer): drawn uniformly with replacement (``sampler =
"uniform"``, :meth:`sample_finite`, blobench's rule), or, as the peer's sampler does, a contiguous block of
``batch_size`` rows, the blocks visited in a fresh random order every epoch (``sampler = "blocks"``; the batch
also carries the blocks' first rows "i0", "j0"; unlike the peer's sampler no block is repeated at an epoch's end,
and rows past the last full block are never drawn). The oracles average the batch's coefficient rows when they are
evaluated (one ``embedding_bag`` sum of the rows, or one matrix-vector product over a block; no copy), so reading
the data is timed with the step. The rows hold H_i and K_i (bitwise symmetric) as upper triangles
(:func:`pack_symmetric`): 6215 numbers per sample instead of 11210, unpacked after the average to the same bits.
The averages of the last ``MEMO_SIZE`` minibatches are kept for the other oracle calls at the same minibatch (the same index tensor storage; ``CACHE_BATCH``): SOBA's
grad_y g, HV and JV at one minibatch read its rows once, MRBO's Q Hessian batches are read once for both points.
This uses that the terms are linear in the coefficients (a quadratic's minibatch is its averaged quadratic), so it
holds for this problem, not in general. Under torch.func transforms nothing is kept.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch._C._functorch import is_batchedtensor, is_functorch_wrapped_tensor

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param

TABLES = ("H", "K", "C", "a", "b")
#: minibatch averages kept per side (least recently used dropped): MRBO / VRBO's Q Hessian batches at two points
MEMO_SIZE = 48


def gen_matrices(rng: np.random.Generator, n: int, d_inner: int, d_outer: int, L_inner: float, L_outer: float,
                 L_cross: float, mu: float) -> tuple[np.ndarray, ...]:
    """benchmark_bilevel's ``gen_matrices`` with numpy's generator: (H [n, dy, dy], K [n, dx, dx], C [n, dx, dy],
    a [n, dy], b [n, dx])."""
    u, _, _ = np.linalg.svd(rng.standard_normal((d_inner, 1)))
    A = u @ np.diag(np.logspace(np.log10(mu) / 2, np.log10(L_inner) / 2, d_inner)) @ u.T
    X = rng.standard_normal((n, 1, d_inner)) @ A
    H = X.transpose(0, 2, 1) @ X / X.shape[1]
    u, _, _ = np.linalg.svd(rng.standard_normal((d_outer, 1)))
    A = u @ np.diag(np.r_[0.0, np.logspace(np.log10(mu) / 2, np.log10(L_outer) / 2, d_outer - 1)]) @ u.T
    X = rng.standard_normal((n, 1, d_outer)) @ A
    K = X.transpose(0, 2, 1) @ X / X.shape[1]
    U, _, V = np.linalg.svd(rng.standard_normal((d_outer, d_inner)))
    k = min(d_outer, d_inner)
    D = np.zeros((d_outer, d_inner))
    D[:k, :k] = np.diag(np.logspace(np.log10(mu), np.log10(L_cross), k))
    X = rng.standard_normal((n, 1, d_inner))
    C = (U @ D @ X.transpose(0, 2, 1)) @ (X @ V.T)
    return H, K, C, rng.standard_normal((n, d_inner)), rng.standard_normal((n, d_outer))


def pack_symmetric(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(a, None), or, when every a[i] is a bitwise symmetric square matrix, (a's upper triangles [n, d(d+1)/2],
    unpack) with ``tri[unpack].view(d, d)`` the matrix again. An average of the triangles unpacks to the average of
    the matrices bit for bit: entries (j, k) and (k, j) are the same numbers averaged the same way (tested)."""
    if a.dim() != 3 or a.shape[1] != a.shape[2] or not torch.equal(a, a.transpose(1, 2)):
        return a, None
    d = a.shape[1]
    r, c = torch.triu_indices(d, d)
    pos = torch.empty(d, d, dtype=torch.long)
    pos[r, c] = torch.arange(r.numel())
    pos[c, r] = pos[r, c]
    return a[:, r, c].contiguous(), pos.reshape(-1)


def _quad(x: torch.Tensor, y: torch.Tensor, H, K, C, a, b) -> torch.Tensor:
    """1/2 y'Hy + 1/2 x'Kx + x'Cy + a'y + b'x (the peer's ``quadratic``)."""
    return 0.5 * (y @ (H @ y)) + 0.5 * (x @ (K @ x)) + x @ (C @ y) + a @ y + b @ x


@harness.register_problem("simulated-quadratic")
class SimulatedQuadratic(harness.Problem):
    """benchmark_bilevel's simulated quadratic: finite sums of n inner and m outer dense per-sample quadratics (the peer's instance), exact truth."""

    params = {
        "n_inner": Param("int", default=1024, low=1, doc="n: inner samples (peer: n_samples_inner)"),
        "n_outer": Param("int", default=1024, low=1, doc="m: outer samples (peer: n_samples_outer)"),
        "dim_inner": Param("int", default=100, low=2, doc="dim_y (peer: dim_inner)"),
        "dim_outer": Param("int", default=10, low=2, doc="dim_x (peer: dim_outer; issue 29's instance: 10)"),
        "mu_inner": Param("float", default=0.1, low=0.0, low_open=True, doc="smallest eigenvalue scale (peer: mu_inner)"),
        "L_inner_inner": Param("float", default=1.0, low=0.0, low_open=True, doc="peer: L_inner_inner"),
        "L_inner_outer": Param("float", default=1.0, low=0.0, low_open=True, doc="peer: L_inner_outer"),
        "L_outer_inner": Param("float", default=1.0, low=0.0, low_open=True, doc="peer: L_outer_inner"),
        "L_outer_outer": Param("float", default=1.0, low=0.0, low_open=True, doc="peer: L_outer_outer"),
        "L_cross_inner": Param("float", default=0.1, low=0.0, low_open=True, doc="peer: L_cross_inner"),
        "L_cross_outer": Param("float", default=0.1, low=0.0, low_open=True, doc="peer: L_cross_outer"),
        "seed": Param("int", default=2442, low=0, doc="numpy seed of the tables (peer: random_state, JAX key)"),
        "stochastic": Param("bool", default=True, doc="minibatches of the finite sums (false: full batch, deterministic)"),
        "sampler": Param("str", default="uniform", choices=("uniform", "blocks"),
                         doc="minibatches: 'uniform' (indices with replacement, blobench's rule) or 'blocks' (the peer's: "
                             "contiguous blocks of batch_size rows, a fresh random order of the blocks every epoch)"),
    }

    #: keep a batch's coefficient averages for the other oracle calls of the step (False: average at every call)
    CACHE_BATCH: ClassVar[bool] = True

    def setup(self) -> None:
        p = self.p
        n, m, dy, dx = p["n_inner"], p["n_outer"], p["dim_inner"], p["dim_outer"]
        self.dim_x, self.dim_y = dx, dy
        rng = np.random.default_rng(p["seed"])
        for _ in range(20):  # the peer's rule: redraw until the Hessian of Phi is positive definite
            g = gen_matrices(rng, n, dy, dx, p["L_inner_inner"], p["L_outer_inner"], p["L_cross_inner"], p["mu_inner"])
            f = gen_matrices(rng, m, dy, dx, p["L_inner_outer"], p["L_outer_outer"], p["L_cross_outer"], p["mu_inner"])
            self._set(g, f)
            if float(torch.linalg.eigvalsh(self._peer_check_matrix())[0]) >= 1e-12:
                break
        else:
            raise ParameterError("problem 'simulated-quadratic': no positive definite Hessian of Phi in 20 draws")
        ev = torch.linalg.eigvalsh(self.fb["g"][0])
        self._constants = {"mu": float(ev[0]), "L": float(ev[-1]), "kappa": float(ev[-1] / ev[0])}
        self._memo: dict[str, OrderedDict] = {"g": OrderedDict(), "f": OrderedDict()}

    def _set(self, g: tuple[np.ndarray, ...], f: tuple[np.ndarray, ...]) -> None:
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        self.tables = {"g": tuple(t(a) for a in g), "f": tuple(t(a) for a in f)}
        #: each sample's five coefficient blocks side by side in one row, for one embedding_bag mean per minibatch; a
        #: table whose samples are bitwise symmetric (H_i = u_i u_i', K_i) keeps its upper triangles only
        #: (:func:`pack_symmetric`; H is 10000 of a row's 11210 numbers: a minibatch reads 45% fewer bytes).
        #: ``avg_row.index_select(0, _unpack[s])`` is the full averaged row, each block at its unpacked offset: the
        #: offsets matter (with the blocks of the packed row as operands, the iterates differed in the last bits:
        #: a BLAS kernel's path may depend on an operand's alignment)
        #: ``_blocks[s]``: (shape, strides, offset) of each block in an unpacked row, its views taken with one
        #: as_strided each
        self._flat, self._unpack, self._blocks = {}, {}, {}
        for s, T in self.tables.items():
            parts = [pack_symmetric(a) for a in T]
            self._flat[s] = torch.cat([a.reshape(a.shape[0], -1) for a, _ in parts], dim=1)
            idx, blocks, at, full = [], [], 0, 0  # offsets in the packed and in the unpacked row
            for t, (a, u) in zip(T, parts):
                k = a[0].numel()
                idx.append(torch.arange(at, at + k) if u is None else u + at)
                blocks.append((tuple(t.shape[1:]), t[0].stride(), full))  # the tables are contiguous
                at, full = at + k, full + t[0].numel()
            self._unpack[s], self._blocks[s] = torch.cat(idx), blocks
        self._cuts = {s: [a[0].numel() for a in T] for s, T in self.tables.items()}
        self._weights: dict[int, torch.Tensor] = {}
        self.fb = {s: tuple(a.mean(0) for a in T) for s, T in self.tables.items()}
        self._Hg_inv: torch.Tensor | None = None
        self._J: torch.Tensor | None = None

    def on(self, device):
        """The tables on ``device`` (Problem.on moves the dicts of tables); the minibatch averages kept for CPU
        index tensors are not carried over (keyed by their addresses): the copy starts with an empty cache."""
        q = super().on(device)
        if q is not self:
            q._memo = {"g": OrderedDict(), "f": OrderedDict()}
        return q

    # -- structure --------------------------------------------------------------------
    @property
    def constants(self) -> dict[str, float]:
        return dict(self._constants)

    @property
    def stochastic(self) -> bool:
        return bool(self.p["stochastic"])

    @property
    def finite_sum(self):
        return (self.p["n_inner"], self.p["n_outer"]) if self.stochastic else None

    def batch_at(self, inner_idx, outer_idx):
        return {"i": inner_idx, "j": outer_idx}

    def sample(self, generator, n, batch_size=1):
        if not self.stochastic:
            return None
        if self.p["sampler"] == "uniform":
            return self.sample_finite(generator, n, batch_size)
        out = {}
        for key, size in (("i", self.p["n_inner"]), ("j", self.p["n_outer"])):
            blocks = size // batch_size
            if blocks < 1:
                raise ParameterError(f"problem 'simulated-quadratic': batch_size {batch_size} exceeds {size} samples")
            order = torch.cat([torch.randperm(blocks, generator=generator) for _ in range(-(-n // blocks))])[:n]
            starts = order * batch_size
            out[key] = starts.unsqueeze(1) + torch.arange(batch_size)
            out[key + "0"] = starts
        return out

    def coefficients(self, side: str, batch) -> tuple[torch.Tensor, ...]:
        """The mean (H, K, C, a, b) over the minibatch's samples of side "g" (indices "i") or "f" ("j"); the
        full-batch means when ``batch`` is None."""
        if batch is None:
            return self.fb[side]
        key_ = "i" if side == "g" else "j"
        idx, start = batch[key_], batch.get(key_ + "0")
        if is_batchedtensor(idx):  # under vmap: an index and a mean (embedding_bag has no batching rule)
            # unpacked before the mean: the reduction's last bits depend on the row's length (tested)
            return self._split(side, self._flat[side][idx].index_select(1, self._unpack[side]).mean(0), packed=False)
        plain = not is_functorch_wrapped_tensor(idx)  # a grad-transform wrapper is never kept
        key = (idx.data_ptr(), idx.storage_offset(), tuple(idx.shape), idx.stride()) if plain else None
        memo = self._memo[side]
        if key is not None and self.CACHE_BATCH and key in memo:
            memo.move_to_end(key)
            return memo[key][1]
        b = idx.numel()
        if start is not None and not is_functorch_wrapped_tensor(start):  # a contiguous block: one gemv, no gather
            w = self._weights.get(b)
            if w is None:
                w = self._weights[b] = torch.full((b,), 1.0 / b, dtype=self._flat[side].dtype)
            row = w @ self._flat[side].narrow(0, int(start), b)
        else:
            row = F.embedding_bag(idx.reshape(1, -1), self._flat[side], mode="sum")[0].div_(b)
        out = self._split(side, row)
        if key is not None and self.CACHE_BATCH:
            # the entry holds idx itself, so its storage (hence the key) cannot be recycled while it is kept;
            # the drawn indices are never written in place
            memo[key] = (idx, out)
            if len(memo) > MEMO_SIZE:
                memo.popitem(last=False)
        return out

    def _split(self, side: str, row: torch.Tensor, packed: bool = True) -> tuple[torch.Tensor, ...]:
        """(H, K, C, a, b) from one averaged row of ``_flat``: unpacked (one ``index_select``), then split."""
        if packed:
            row = row.index_select(0, self._unpack[side])
        if not is_functorch_wrapped_tensor(row):  # the same views at the same offsets, in 5 calls instead of 11
            return tuple(row.as_strided(shape, stride, row.storage_offset() + at)
                         for shape, stride, at in self._blocks[side])
        return tuple(r.view(t.shape[1:]) for r, t in zip(row.split(self._cuts[side]), self.tables[side]))

    def inner(self, x, y, batch=None):
        return _quad(x, y, *self.coefficients("g", batch))

    def outer(self, x, y, batch=None):
        return _quad(x, y, *self.coefficients("f", batch))

    # -- closed-form oracles (Problem.closed_grad / closed_second) ---------------------------------
    def closed_grad(self, side, argnums, x, y, batch=None):
        """grad_x and grad_y of the (averaged) quadratic, in autograd's own operations and order of
        accumulation (``_quad``'s backward pass: each term's contribution added as the engine adds it, the later
        term first), so every gradient has autograd's bits (tested, at every oracle and in whole runs); without
        the forward pass and the graph (about 8 us against 100 us a call on issue 29's instance)."""
        H, K, C, a, b = self.coefficients(side, batch)
        out = []
        for i in argnums:
            if i == 0:
                out.append(((b + C @ y) + 0.5 * (K @ x)) + K.T @ (0.5 * x))
            else:
                out.append(((a + C.T @ x) + 0.5 * (H @ y)) + H.T @ (0.5 * y))
        return tuple(out)

    def closed_second(self, x, y, v, batch=None, wrt="y"):
        """grad2_yy g v = (H v) 0.5 + H'(v 0.5) and grad2_xy g v = C v, as autograd's double backward through its
        own graph of grad_y g computes them (same bits, tested)."""
        H, _, C, _, _ = self.coefficients("g", batch)
        if wrt == "y":
            return ((H @ v) * 0.5 + H.T @ (v * 0.5),)
        if wrt == "x":
            return (C @ v,)
        return C @ v, (H @ v) * 0.5 + H.T @ (v * 0.5)

    # -- ground truth (float64, closed form in the full-batch means) -----------------------------
    @property
    def Hg_inv(self) -> torch.Tensor:
        if self._Hg_inv is None:
            self._Hg_inv = torch.linalg.inv(self.fb["g"][0])
        return self._Hg_inv

    def _jac(self) -> torch.Tensor:
        """J = dy*/dx = -Hg^-1 Cg' (dim_y x dim_x), built once per table set."""
        if self._J is None:
            self._J = -self.Hg_inv @ self.fb["g"][2].T
        return self._J

    def inner_solution(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        _, _, C, a, _ = self.fb["g"]
        return -(self.Hg_inv @ (C.T @ x + a))

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return float(self.outer(x, self.inner_solution(x)))

    def hypergradient(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        y = self.inner_solution(x)
        P, R, D, c, e = self.fb["f"]
        return R @ x + D @ y + e + self._jac().T @ (P @ y + D.T @ x + c)

    def hessian_phi(self) -> torch.Tensor:
        """Hessian of Phi: J'Hf J + Kf + Cf J + J'Cf'."""
        J = self._jac()
        P, R, D, _, _ = self.fb["f"]
        DJ = D @ J
        return J.T @ P @ J + R + DJ + DJ.T

    def _peer_check_matrix(self) -> torch.Tensor:
        """The matrix whose smallest eigenvalue the peer's ``get_hessian_min_eigval`` tests: J'Hf J + Kf +
        (Cf J + J'Cf')/2 (half the cross term of the true Hessian; kept, since it decides the redraws)."""
        J = self._jac()
        P, R, D, _, _ = self.fb["f"]
        DJ = D @ J
        return J.T @ P @ J + R + 0.5 * (DJ + DJ.T)

    def stationary_points(self):
        x0 = torch.zeros(self.dim_x, dtype=torch.float64)
        return [torch.linalg.solve(self.hessian_phi(), -self.hypergradient(x0))]

    def x0(self):
        return torch.zeros(self.dim_x, dtype=torch.float64)

    def export(self, path: str) -> None:
        """The per-sample tables as an .npz (g_H, g_K, g_C, g_a, g_b, f_H, ...), for ``benchmarks/peer_jax.py``."""
        np.savez(path, **{f"{s}_{k}": a.numpy() for s, T in self.tables.items() for k, a in zip(TABLES, T)})
