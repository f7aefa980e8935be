"""The Estimator base class (docs/design.md, "Core objects").

An estimator is built from validated parameters. All of its randomness is drawn up
front by ``draw(problem, generator, n)`` (a dict of tensors with leading dim n), and
``estimate(oracles, x, noise, state)`` is a pure function of its inputs that returns an
:class:`Estimate`. Fixed-length loops keep it vmappable: ``harness.estimate`` runs
thousands of draws as one batched call.
"""
from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch

from blobench.core.oracles import Oracles
from blobench.core.params import Param, validate
from blobench.core.problem_base import Problem


class Estimate(NamedTuple):
    """grad: the hypergradient estimate (dim_x,). calls: optional per-draw oracle counts
    (name -> scalar tensor) that *override* the counted ones, for estimators whose cost
    depends on their randomness (e.g. UFO's coin). state: warm-start state for the next
    outer iteration (a dict of tensors or None)."""

    grad: torch.Tensor
    calls: dict[str, torch.Tensor] | None = None
    state: dict[str, torch.Tensor] | None = None


class Estimator:
    """Base class; register subclasses with ``@harness.register_estimator("name")``."""

    name: ClassVar[str] = "?"
    params: ClassVar[dict[str, Param]] = {}
    #: False for estimators whose estimate cannot run under torch.func.vmap; harness.estimate
    #: then falls back to a per-draw loop (the subclass docstring must say why).
    vmappable: ClassVar[bool] = True
    #: what the estimator's paper proves, as data (:mod:`blobench.core.theory`: Rate, BiasFloor, Unbiased,
    #: VarianceScaling, CostFormula, MemoryO1, Converges); read by ``blobench verify``, ``error_vs_budget`` and
    #: the report. Every registered class sets its own (an empty tuple declares nothing).
    theory: ClassVar[tuple] = ()

    def __init__(self, **params: Any):
        self.p = validate(f"estimator {self.name!r}", self.params, params)

    def draw(self, problem: Problem, generator: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        """All randomness for n draws, leading dim n. Default: none."""
        return {}

    def estimate(
        self, oracles: Oracles, x: torch.Tensor, noise: dict[str, torch.Tensor], state: dict | None = None
    ) -> Estimate:
        raise NotImplementedError

    # -- helpers shared by estimators -----------------------------------------------------
    def inner_steps(self, problem: Problem | Oracles) -> int:
        """inner_steps, defaulting to the unroll length r of an algorithm-based problem."""
        d = self.p.get("inner_steps")
        if d is None:
            t = problem.target
            d = t.steps if t.kind == "unrolled" else 10
        return int(d)  # type: ignore[arg-type]  # an unrolled Target always carries its steps

    def inner_lr(self, problem: Problem | Oracles) -> float:
        """inner_lr, defaulting to the problem's unroll_lr, else 1/L."""
        a = self.p.get("inner_lr")
        if a is None:
            t = problem.target
            if t.kind == "unrolled":
                return float(t.lr)  # type: ignore[arg-type]  # an unrolled Target always carries its lr
            return 1.0 / float(problem.constants["L"])
        return float(a)

    # Optional: ``estimate_chunk(oracles, x, noise) -> (grads [m, dim_x], calls name -> LongTensor[m])`` for
    # m draws at once (noise with leading dim m). blobench.measure.sampling.run_draws calls it instead of vmapping
    # ``estimate`` when present, so an estimator whose work depends on its randomness (UFO's coin) can
    # batch each group of draws apart; per-draw calls must come from blobench.measure.sampling.vmap_counted.

    def describe(self) -> str:
        return (type(self).__doc__ or "").strip()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.p.items())
        return f"{self.name}({args})"


# Parameter specs shared by estimators (names from the docs/design.md glossary).
INNER_STEPS = Param("int", optional=True, low=0, doc="D or K: inner gradient steps (default: r of an unrolled problem, else 10)")
INNER_LR = Param("float", optional=True, low=0, low_open=True, doc="alpha: inner step size (default 1/L, or the problem's unroll_lr)")
SOLVER_STEPS = Param("int", default=10, low=0, doc="N or Q: iterations of the linear-system solver")
SOLVER_LR = Param("float", optional=True, low=0, low_open=True, doc="eta: Neumann / fixed-point step size (default 1/L)")
BATCH_SIZE = Param("int", default=1, low=1, doc="minibatch size per stochastic oracle call")
INNER_SOLVER = Param("str", default="gd", choices=("gd", "agd"),
                     doc="inner solver: gradient descent, or Nesterov's AGD (momentum (sqrt(kappa)-1)/(sqrt(kappa)+1) from the "
                         "problem's mu and inner_lr; k/(k+3) without mu) as in AccBiO (Ji & Liang 2023)")


def draw_batches(problem: Problem, generator: torch.Generator, n: int, spec: dict[str, int],
                 batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Draw the minibatches of n estimates up front, as flat ``"<role>/<key>"`` tensors.

    ``spec`` maps a role to its number of batches per draw: k > 0 gives one batch per step
    (shape [n, k, ...], for per-step SGD or independent Hessian batches), 0 gives a single
    batch (shape [n, ...]). Deterministic problems draw nothing. For an algorithm-based
    problem ("unrolled" target) a draw is one task, shared by every role: only ``task``
    is drawn.
    """
    if not problem.stochastic:
        return {}
    if problem.target.kind == "unrolled":
        spec = {"task": 0}
    out: dict[str, torch.Tensor] = {}
    for role, k in spec.items():
        m = n * max(k, 1)
        batch = problem.sample(generator, m, batch_size)
        if batch is None:
            continue
        for key, t in batch.items():
            if t.shape[0] != m:
                from blobench.core.errors import PluginError

                raise PluginError(f"problem {problem.name!r}: sample(n={m}) returned {key!r} with leading dim {t.shape[0]}")
            out[f"{role}/{key}"] = t.reshape(n, k, *t.shape[1:]) if k > 0 else t
    return out


def batch_of(noise: dict[str, torch.Tensor], role: str) -> dict[str, torch.Tensor] | None:
    """The batch (or stacked per-step batches) drawn for ``role``; a task for unrolled problems."""
    prefix = role + "/"
    b = {k[len(prefix):]: v for k, v in noise.items() if k.startswith(prefix)}
    if not b:
        tprefix = "task/"
        b = {k[len(tprefix):]: v for k, v in noise.items() if k.startswith(tprefix)}
    return b or None


def step_batches(problem: Problem | Oracles, noise: dict[str, torch.Tensor], role: str = "inner"):
    """Batch function for an inner loop: per-step minibatches, or one shared task (unrolled problems)."""
    from blobench.core.numerics import per_step, shared

    b = batch_of(noise, role)
    if b is None or problem.target.kind == "unrolled":
        return shared(b)
    return per_step(b)
