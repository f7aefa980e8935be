"""``harness.estimate``: many draws of one estimator at one x, batched with torch.func.vmap.

Noise comes in canonical blocks (:class:`NoiseBlocks`): draws [k B, (k+1) B) are
``estimator.draw(problem, gen_k, B)`` with ``gen_k`` seeded from (seed, k) alone, and block 0
seeded with ``seed`` itself, exactly as the single up-front draw of earlier versions (so every
call with n <= B gives the same numbers as before). B depends only on the problem and the
estimator (a block's noise fits in :data:`NOISE_BLOCK_BYTES`), never on ``chunk``, n or the
job count, so results are bit-identical whatever the chunk size, and the noise is drawn block
by block as the chunks need it: memory does not grow with n.

The estimator runs vmapped in chunks whose size bounds memory. Estimators that cannot be
vmapped (``vmappable = False``) fall back to a per-draw loop; deterministic estimators on a
deterministic problem are evaluated once and repeated.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch.func import vmap
from torch.utils._pytree import tree_map

from blobench.core.errors import PluginError
from blobench.core.estimator_base import Estimator
from blobench.core.oracles import ORACLE_NAMES, Oracles
from blobench.core.problem_base import Problem
from blobench.measure.timing import warm_up_autodiff


@dataclass
class EstimateBatch:
    """grads: Tensor[n, dim_x]; calls: name -> LongTensor[n] (oracle calls of each draw)."""

    grads: torch.Tensor
    calls: dict[str, torch.Tensor]
    seconds: float = 0.0
    batched: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.grads.shape[0]

    def mean_calls(self) -> dict[str, float]:
        return {k: float(v.double().mean()) for k, v in self.calls.items()}


def _slice(noise: dict[str, torch.Tensor], a: int, b: int) -> dict[str, torch.Tensor]:
    return {k: v[a:b] for k, v in noise.items()}


def _check_grad(estimator: Estimator, problem: Problem, g: torch.Tensor, batched: int | None) -> None:
    want = (problem.dim_x,) if batched is None else (batched, problem.dim_x)
    if not isinstance(g, torch.Tensor) or tuple(g.shape) != want:
        shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise PluginError(
            f"estimator {estimator.name!r} returned a gradient of shape {shape} on problem "
            f"{problem.name!r}; expected {want}"
        )


def _as_estimate(estimator: Estimator, out):
    from blobench.core.estimator_base import Estimate

    if isinstance(out, Estimate):
        return out
    if isinstance(out, torch.Tensor):
        return Estimate(out)
    raise PluginError(f"estimator {estimator.name!r} must return an Estimate, got {type(out).__name__}")


def estimate(
    problem: Problem, estimator: Estimator, x: torch.Tensor | None = None, seed: int = 0, n: int = 1,
    chunk: int = 1024, device: str | torch.device = "cpu", vmapped: bool | None = None,
) -> EstimateBatch:
    """n independent estimates at x (default ``problem.x0()``), seeded by ``seed``.

    Returns grads (n x dim_x) and per-draw oracle counts; ``seconds`` is end to end, the
    drawing of the noise (block by block, as the chunks need it) included. ``vmapped=False``
    forces the per-draw loop (used by benchmarks to compare against it). The result depends on
    (problem, estimator, x, seed, n) only: not on ``chunk`` nor on ``vmapped``.
    """
    if n < 1:
        from blobench.core.errors import ParameterError

        raise ParameterError(f"n (number of draws) must be >= 1, got {n}")
    x = problem.as_x(x) if x is not None else problem.x0()
    x = x.to(device)
    use_vmap = estimator.vmappable if vmapped is None else (vmapped and estimator.vmappable)
    warm_up_autodiff(x.device)  # once per process: ``seconds`` must not hold torch's lazy first-call imports
    t0 = time.perf_counter()
    noise = NoiseBlocks(problem, estimator, n, seed, device)
    G, C = run_draws(problem.on(device), estimator, x, noise, n, chunk=chunk, vmapped=use_vmap)
    _sync(device)
    secs = time.perf_counter() - t0
    return EstimateBatch(G.cpu(), C, secs, batched=use_vmap)


def _sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


#: bytes of noise in one canonical block (sets the block size B in draws; see :func:`noise_block_size`)
NOISE_BLOCK_BYTES = 64 * 2**20
#: the most draws in one block (noise-free or nearly noise-free estimators)
MAX_BLOCK = 2**22


def noise_block_size(problem: Problem, estimator: Estimator) -> int:
    """B: draws per canonical noise block, the largest power of two whose noise fits in
    :data:`NOISE_BLOCK_BYTES` (at least 1, at most :data:`MAX_BLOCK`), from the bytes of one draw.

    A function of the problem and the estimator (their parameters fix the noise's shapes), never
    of n, ``chunk`` or jobs. Probing draws once from a throw-away generator.
    """
    probe = estimator.draw(problem, torch.Generator().manual_seed(0), 1) or {}
    per = sum(int(v.element_size()) * int(v[:1].numel()) for v in probe.values())
    if per <= 0:
        return MAX_BLOCK
    b = 1
    while b * 2 <= MAX_BLOCK and b * 2 * per <= NOISE_BLOCK_BYTES:
        b *= 2
    return b


def block_seed(seed: int, k: int) -> int:
    """Seed of noise block k: ``seed`` itself for block 0 (the historical single draw), else a hash of (seed, k)."""
    if k == 0:
        return int(seed)
    h = hashlib.blake2b(f"blobench-noise:{int(seed)}:{int(k)}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & (2**63 - 1)


class NoiseBlocks:
    """The noise of n draws, drawn lazily in canonical blocks (see the module docstring).

    ``rows(a, b)`` gives draws [a, b) as a dict of tensors with leading dim b - a; blocks are
    drawn when first needed and dropped once a later chunk starts past them, so sequential
    chunks hold at most the blocks they overlap.
    """

    def __init__(self, problem: Problem, estimator: Estimator, n: int, seed: int = 0,
                 device: str | torch.device = "cpu", block: int | None = None):
        self.problem, self.estimator, self.n, self.seed, self.device = problem, estimator, int(n), int(seed), device
        self.block = int(block) if block is not None else noise_block_size(problem, estimator)
        self._cache: dict[int, dict[str, torch.Tensor]] = {}
        self.empty = not self._get(0)

    def _get(self, k: int) -> dict[str, torch.Tensor]:
        if k not in self._cache:
            m = min(self.block, self.n - k * self.block)
            gen = torch.Generator().manual_seed(block_seed(self.seed, k))
            nz = self.estimator.draw(self.problem, gen, m) or {}
            self._cache[k] = {key: v.to(self.device) for key, v in nz.items()}
        return self._cache[k]

    def rows(self, a: int, b: int) -> dict[str, torch.Tensor]:
        """Noise of draws [a, b)."""
        k0, k1 = a // self.block, (b - 1) // self.block
        for k in [k for k in self._cache if k < k0]:
            del self._cache[k]
        parts = [_slice(self._get(k), max(a - k * self.block, 0), min(b - k * self.block, self.block))
                 for k in range(k0, k1 + 1)]
        if len(parts) == 1:
            return parts[0]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    def all(self) -> dict[str, torch.Tensor]:
        return self.rows(0, self.n) if not self.empty else {}


class _Drawn:
    """Pre-drawn noise (a dict of tensors with leading dim n) behind the :class:`NoiseBlocks` interface."""

    def __init__(self, noise: Mapping[str, torch.Tensor]):
        self.noise = dict(noise)
        self.empty = not self.noise

    def rows(self, a: int, b: int) -> dict[str, torch.Tensor]:
        return _slice(self.noise, a, b)


def draw_noise(problem: Problem, estimator: Estimator, n: int, seed: int = 0,
               device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All randomness of n draws at once: the concatenation of the canonical blocks that
    :func:`estimate` draws lazily (identical numbers). Holds all n draws' noise in memory."""
    return NoiseBlocks(problem, estimator, n, seed, device).all()


#: the fewest rows a vmapped call runs with: smaller calls are padded (by repeating their last row) and
#: the padding dropped. Below a few rows the batched kernels (GEMV for one row, GEMM edge kernels for
#: two to a few) round differently from the kernels of a larger batch, so without padding a draw's
#: estimate depended on how many draws shared its call, i.e. on ``chunk`` (and, for UFO, on how many
#: coins fired in the chunk). Padded, every row is computed by the same kernels whatever the call's
#: size: results are bit-identical whatever the chunk (tests/test_sampling.py). Padding costs at most
#: ROW_ALIGN - 1 wasted rows per call, and oracle counts are per batched call, so it changes none.
#: Set to 1 (the tests' negative control) to switch the padding off.
MIN_VMAP_ROWS = 16
#: every padded call's row count is a multiple of this. MKL's float64 GEMM on AVX-512 runs its rows in
#: blocks of 12 and the last ``m mod 12`` rows through an edge kernel that rounds differently (measured:
#: of a 75-row call rows 72-74 differ in the last bit from the same draws in a 16-row call, whose rows
#: 12-15 differ in turn), so a row's bits depended on its position in its call. 24 is a multiple of the
#: AVX-512 (12, 24) and AVX2 (4, 6, 8, 12) row blocks: every row of every call goes through the main kernel.
ROW_ALIGN = 24


def padded_rows(m: int) -> int:
    """The row count a vmapped call of ``m`` rows runs with (m itself when the padding is switched off)."""
    if m <= 0 or MIN_VMAP_ROWS <= 1:
        return m
    return max(MIN_VMAP_ROWS, -(-m // ROW_ALIGN) * ROW_ALIGN)


def padded_vmap(fn: Callable[..., Any], args: tuple, m: int) -> Any:
    """``vmap(fn)(*args)`` over the m rows of ``args`` (pytrees of tensors with leading dim m), run on
    :func:`padded_rows` (m) rows, a multiple of :data:`ROW_ALIGN`: the call is padded with copies of its last
    row, and every output with that leading dim is cut back to m rows."""
    batched = vmap(fn, randomness="error")
    rows = padded_rows(m)
    if rows == m:
        return batched(*args)
    pad = rows - m

    def grow(t):
        if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == m:
            return torch.cat([t, t[-1:].expand(pad, *t.shape[1:])])
        return t

    out = batched(*tree_map(grow, args))
    return tree_map(lambda t: t[:m] if isinstance(t, torch.Tensor) and t.dim() > 0
                    and t.shape[0] == rows else t, out)


def vmap_counted(oracles: Oracles, fn: Callable[..., Any], args: tuple, idx: torch.Tensor, m: int,
                 ) -> tuple[Any, dict[str, torch.Tensor]]:
    """``vmap(fn)(*args)`` over the draws ``idx`` of a chunk of ``m`` draws, with its oracle calls measured.

    ``args`` are pytrees of tensors with leading dim m; only rows ``idx`` are passed to fn. Under vmap an
    oracle call is counted once per batched call, i.e. once for each draw of the subset, so the calls
    executed are attributed to exactly the draws in ``idx``: returns (fn's outputs for those draws,
    name -> LongTensor[m] with the calls of each draw, 0 outside ``idx``). Estimators that run different
    work for different draws (:meth:`Estimator.estimate_chunk`) build their per-draw counts from this,
    as the calls execute, never from a formula.
    """
    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    sub = tree_map(lambda t: t[idx] if isinstance(t, torch.Tensor) else t, args)
    before = oracles.snapshot()
    out = padded_vmap(fn, sub, int(idx.numel()))
    after = oracles.snapshot()
    counts = {}
    for k in ORACLE_NAMES:
        c = torch.zeros(m, dtype=torch.long)
        c[idx] = int(after[k] - before[k])
        counts[k] = c
    return out, counts


def run_draws(problem: Problem, estimator: Estimator, x: torch.Tensor,
              noise: Mapping[str, torch.Tensor] | NoiseBlocks, n: int,
              chunk: int = 1024, vmapped: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Evaluate n estimates: (grads [n, dim_x] on x's device, calls name -> LongTensor[n]).

    ``noise`` is pre-drawn (a dict, leading dim n) or a :class:`NoiseBlocks` that draws each
    chunk's noise as the loop reaches it. With ``vmapped`` (and a vmappable estimator) the draws
    run through ``torch.func.vmap`` in chunks of ``chunk`` draws: peak memory is that of
    ``chunk`` simultaneous estimates (and one noise block), not n. Otherwise one draw at a time.
    An estimator with an ``estimate_chunk`` method batches each chunk itself (returning per-draw
    calls measured by :func:`vmap_counted`). No noise at all: one evaluation, repeated n times.
    """
    if chunk < 1:
        from blobench.core.errors import ParameterError

        raise ParameterError(f"chunk (draws per vmapped call) must be >= 1, got {chunk}")
    src = noise if isinstance(noise, (NoiseBlocks, _Drawn)) else _Drawn(noise or {})
    o = Oracles(problem)
    use_vmap = bool(vmapped) and estimator.vmappable
    grads: list[torch.Tensor] = []
    calls: dict[str, list[torch.Tensor]] = {k: [] for k in ORACLE_NAMES}

    def add_calls(est_calls, counted: dict[str, int], m: int) -> None:
        for k in ORACLE_NAMES:
            if est_calls is not None and k in est_calls:
                c = torch.as_tensor(est_calls[k]).reshape(-1).to(torch.long).cpu()
                calls[k].append(c.expand(m) if c.numel() == 1 else c)
            else:
                calls[k].append(torch.full((m,), counted[k], dtype=torch.long))

    if src.empty:
        # no randomness at all: one evaluation, repeated n times
        o.reset()
        est = _as_estimate(estimator, estimator.estimate(o, x, {}, None))
        _check_grad(estimator, problem, est.grad, None)
        grads.append(est.grad.detach().unsqueeze(0).expand(n, -1))
        add_calls(est.calls, o.snapshot(), n)
    elif use_vmap and callable(getattr(estimator, "estimate_chunk", None)):
        # the estimator batches its own draws (e.g. UFO groups them by coin) and returns per-draw counts
        # measured at the oracle layer by :func:`vmap_counted`
        def run_chunk(nz: dict[str, torch.Tensor], m: int) -> None:
            o.reset()
            g, c = estimator.estimate_chunk(o, x, nz)
            _check_grad(estimator, problem, g, m)
            grads.append(g.detach())
            for k in ORACLE_NAMES:
                calls[k].append(torch.as_tensor(c[k]).to(torch.long).cpu().reshape(m) if k in c
                                else torch.zeros(m, dtype=torch.long))
    elif use_vmap:
        def one(nz):
            est = _as_estimate(estimator, estimator.estimate(o, x, nz, None))
            return est.grad, (est.calls or {})

        def run_chunk(nz: dict[str, torch.Tensor], m: int) -> None:
            o.reset()
            g, c = padded_vmap(one, (nz,), m)
            _check_grad(estimator, problem, g, m)
            grads.append(g.detach())
            add_calls(c, o.snapshot(), m)
    else:
        def run_chunk(nz: dict[str, torch.Tensor], m: int) -> None:
            for i in range(m):
                o.reset()
                est = _as_estimate(estimator, estimator.estimate(o, x, {k: v[i] for k, v in nz.items()}, None))
                _check_grad(estimator, problem, est.grad, None)
                grads.append(est.grad.detach().unsqueeze(0))
                add_calls(est.calls, o.snapshot(), 1)

    if not src.empty:
        for a in range(0, n, chunk):  # each chunk's noise is drawn (or sliced) as the loop reaches it
            b = min(n, a + chunk)
            run_chunk(src.rows(a, b), b - a)
    G = torch.cat(grads, 0)
    C = {k: torch.cat(v) for k, v in calls.items()}
    return G, C
