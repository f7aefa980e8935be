"""What both batteries share: the result row, sizes, the instances they run on, numerics helpers."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

PASS, FAIL, NA, ERROR = "pass", "fail", "n/a", "error"


@dataclass
class Check:
    """One row of the verification card: a property of ``subject`` checked on ``problem``.

    ``verdict``: pass, fail, n/a (not applicable, with the reason in ``measured``) or error (the check itself
    raised: counted as a failure)."""

    subject: str
    kind: str  # "estimator" or "problem"
    prop: str
    problem: str
    verdict: str
    measured: str = ""
    expected: str = ""
    source: str = ""
    seconds: float = 0.0
    value: float | None = None  # the measured figure, where one number says it (the conformance matrix)

    @property
    def failed(self) -> bool:
        return self.verdict in (FAIL, ERROR)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Size:
    """Experiment sizes: ``ci`` (seconds per estimator on 2 cores) or ``full``."""

    name: str
    draws: int  # draws for the bias tests
    fd_dirs: int  # finite-difference directions
    honesty_draws: int
    stoch_samples: int  # samples for the minibatch-mean and noise tests


SIZES = {"ci": Size("ci", draws=10000, fd_dirs=3, honesty_draws=2, stoch_samples=4000),
         "full": Size("full", draws=100000, fd_dirs=8, honesty_draws=4, stoch_samples=40000)}


@dataclass(frozen=True)
class Instance:
    """A registered problem with parameters, as the estimator battery runs on it."""

    label: str
    name: str
    params: dict = field(default_factory=dict)

    def build(self):
        from blobench.core import api

        return api.problem(self.name, **self.params)


#: the problems (with exact truth) the estimator battery runs on at ci size: small, built in milliseconds,
#: covering deterministic and stochastic problem-based BLO, a finite sum, and algorithm-based (unrolled) BLO.
CI_INSTANCES = (
    Instance("quadratic", "quadratic", {"dim": 5, "kappa": 10.0}),
    Instance("quadratic-noisy", "quadratic", {"dim": 5, "kappa": 10.0, "noise": 0.5}),
    Instance("quadratic-finite", "quadratic", {"dim": 5, "kappa": 10.0, "noise": 0.5, "n_samples": 16}),
    Instance("kappa-hard", "kappa-hard", {}),
    Instance("meta-linreg", "meta-linreg", {}),
)
FULL_INSTANCES = CI_INSTANCES + (
    Instance("quadratic-k100", "quadratic", {"dim": 20, "kappa": 100.0}),
    Instance("lb-scsc", "lb-scsc", {"dim": 20}),
    Instance("ufo-counterexample", "ufo-counterexample", {}),
)


def instances(size: str, only: list[str] | None = None) -> tuple[Instance, ...]:
    """The battery's instances; ``only`` (labels or registered problem names, ``--problems``) restricts them,
    and a registered problem name not among them is added with its default parameters."""
    base = FULL_INSTANCES if size == "full" else CI_INSTANCES
    if not only:
        return base
    out = [i for i in base if i.label in only or i.name in only]
    seen = {i.name for i in out} | {i.label for i in out}
    out += [Instance(n, n, {}) for n in only if n not in seen]
    return tuple(out)


def timed(fn: Callable[[], Check]) -> Check:
    t0 = time.perf_counter()
    c = fn()
    c.seconds = time.perf_counter() - t0
    return c


def fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.{digits}g}"


def state_digest(obj: Any) -> list:
    """Every tensor reachable from an object's attributes (one level down into dicts, lists, tuples), cloned:
    compared before and after a call to see that nothing mutated it."""
    out = []
    items = vars(obj).items() if hasattr(obj, "__dict__") else []
    for k, v in sorted(items, key=lambda kv: kv[0]):
        vals = v.values() if isinstance(v, dict) else (v if isinstance(v, (list, tuple)) else [v])
        for t in vals:
            if isinstance(t, torch.Tensor):
                out.append((k, t.detach().clone()))
            elif isinstance(t, (int, float, str, bool)) or t is None:
                out.append((k, t))
    return out


def same_digest(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for (ka, va), (kb, vb) in zip(a, b):
        if ka != kb:
            return False
        if isinstance(va, torch.Tensor):
            if not isinstance(vb, torch.Tensor) or va.shape != vb.shape or not torch.equal(va, vb):
                return False
        elif va != vb:
            return False
    return True


def cast_problem(problem, dtype: torch.dtype):
    """A shallow copy of ``problem`` with every floating tensor attribute cast to ``dtype`` (the float32 check)."""
    import copy

    q = copy.copy(problem)
    for k, v in vars(problem).items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            setattr(q, k, v.to(dtype))
    q.dtype = dtype
    return q
