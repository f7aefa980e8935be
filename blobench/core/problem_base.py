"""The Problem base class (docs/design.md, "Core objects").

A problem owns its ground truth. Subclasses define, as pure differentiable torch
functions, ``outer(x, y, batch)`` (f) and ``inner(x, y, batch)`` (g); ``batch`` is None
for deterministic problems or a dict of tensors (one minibatch or one task) drawn by
``sample``. Ground truth (``value``, ``hypergradient``, ``inner_solution``,
``stationary_points``) is computed in float64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch

from blobench.core.params import Param, validate

Batch = Mapping[str, torch.Tensor] | None


@dataclass(frozen=True)
class Target:
    """What the hypergradient is the gradient of.

    kind="argmin": Phi(x) = f(x, y*(x)), y* = argmin_y g(x, y) (problem-based BLO).
    kind="unrolled": Phi_r(x) = E_task f_task(x, y_r), y_0 = init_inner(x),
    y_{j+1} = y_j - alpha grad_y g_task(x, y_j) for r steps (algorithm-based BLO).
    """

    kind: str = "argmin"
    steps: int | None = None
    lr: float | None = None


def _to_device(v: Any, dev: torch.device) -> Any:
    """v with every tensor in it (through dicts, lists and tuples) on ``dev``; v itself where it holds none."""
    if isinstance(v, torch.Tensor):
        return v.to(dev)
    if isinstance(v, (dict, list, tuple)):
        items = list(v.items()) if isinstance(v, dict) else list(enumerate(v))
        moved = [(k, _to_device(x, dev)) for k, x in items]
        if all(m is x for (_, m), (_, x) in zip(moved, items)):
            return v
        if isinstance(v, dict):
            out = type(v)()
            out.update(moved)
            return out
        vals = [m for _, m in moved]
        return type(v)(*vals) if hasattr(v, "_fields") else type(v)(vals)  # a namedtuple takes its fields
    return v


class Problem:
    """Base class; register subclasses with ``@harness.register_problem("name")``.

    Subclasses set ``params`` (a dict of :class:`~blobench.core.params.Param`) and implement
    ``setup()`` (build data from ``self.p``), ``outer``, ``inner``, ``x0``, ``value``,
    ``hypergradient`` and, where they exist, ``inner_solution`` and ``stationary_points``.
    Stochastic problems implement ``sample(generator, n, batch_size)``.
    """

    name: ClassVar[str] = "?"
    params: ClassVar[dict[str, Param]] = {}
    dtype: torch.dtype = torch.float64

    def __init__(self, **params: Any):
        self.p = validate(f"problem {self.name!r}", self.params, params)
        self.setup()

    # -- to implement ---------------------------------------------------------------
    def setup(self) -> None:
        pass

    dim_x: int
    dim_y: int

    @property
    def target(self) -> Target:
        return Target("argmin")

    @property
    def constants(self) -> dict[str, float]:
        """Constants as the theory uses them: mu, L (smoothness of g in y), kappa, ..."""
        return {}

    @property
    def stochastic(self) -> bool:
        return False

    def outer(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        raise NotImplementedError

    def inner(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        raise NotImplementedError

    # -- optional closed-form oracles ---------------------------------------------------------
    def closed_grad(self, side: str, argnums: tuple[int, ...], x: torch.Tensor, y: torch.Tensor,
                    batch: Batch = None) -> tuple[torch.Tensor, ...]:
        """Optional: the gradients of ``inner`` (side "g") or ``outer`` ("f") at (x, y; batch) with respect to each
        of ``argnums`` (0: x, 1: y), in closed form. A problem that does not override it has none: the oracles use
        autograd.

        The oracles call it only outside every torch.func transform, with grad mode on and no input requiring grad
        (where they would otherwise build a plain autograd graph), and only while ``inner`` and ``outer`` are this
        class's own (:func:`blobench.core.oracles.closed_forms`). It must compute what autograd computes:
        ``blobench verify`` checks every closed form against autograd (``closed_forms``)."""
        raise NotImplementedError

    def closed_second(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None,
                      wrt: str = "y") -> tuple[torch.Tensor, ...]:
        """Optional, with :meth:`closed_grad`: products of v with the Jacobian of grad_y g at (x, y; batch), in
        closed form: ``wrt`` "y" (grad2_yy g v,), "x" (grad2_xy g v,) or "xy" (grad2_xy g v, grad2_yy g v).
        Called and checked as :meth:`closed_grad` is."""
        raise NotImplementedError

    def init_inner(self, x: torch.Tensor) -> torch.Tensor:
        """y_0; independent of x for problem-based BLO (zeros by default)."""
        return torch.zeros(self.dim_y, dtype=x.dtype, device=x.device)

    def x0(self) -> torch.Tensor:
        return torch.zeros(self.dim_x, dtype=self.dtype)

    def sample(self, generator: torch.Generator, n: int, batch_size: int = 1) -> dict[str, torch.Tensor] | None:
        """n stacked batches (leading dim n) of ``batch_size`` samples each; None if deterministic."""
        return None

    # -- finite sums (variance-reduced methods; issue 15) -----------------------------
    @property
    def finite_sum(self) -> tuple[int, int] | None:
        """(n, m) when g = 1/n sum_i g_i and f = 1/m sum_j f_j with samples indexable one by one
        (Dagreou et al. 2022's finite-sum setting, needed by SABA-type memories); None otherwise.
        A finite-sum problem implements :meth:`batch_at`; its ``sample`` may use :meth:`sample_finite`."""
        return None

    def batch_at(self, inner_idx: torch.Tensor, outer_idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The minibatch made of inner samples ``inner_idx`` and outer samples ``outer_idx`` (LongTensors [b]);
        a pure, vmappable function of the indices. Its dict carries the indices as "i" and "j"."""
        raise NotImplementedError(f"problem {self.name!r} is not a finite sum")

    def sample_finite(self, generator: torch.Generator, n: int, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """n minibatches of ``batch_size`` inner and outer indices drawn uniformly with replacement."""
        from torch.func import vmap

        ni, no = self.finite_sum  # type: ignore[misc]  # called only on finite sums (batch_at defined)
        i = torch.randint(0, ni, (n, batch_size), generator=generator)
        j = torch.randint(0, no, (n, batch_size), generator=generator)
        return vmap(self.batch_at)(i, j)

    def value(self, x: torch.Tensor) -> float:
        raise NotImplementedError

    def hypergradient(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inner_solution(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"problem {self.name!r} has no closed-form inner solution")

    def stationary_points(self) -> list[torch.Tensor]:
        return []

    # -- helpers --------------------------------------------------------------------
    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip()
        return doc

    def as_x(self, x: Any) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=self.dtype)
        if t.shape != (self.dim_x,):
            from blobench.core.errors import PluginError

            raise PluginError(f"problem {self.name!r}: x must have shape ({self.dim_x},), got {tuple(t.shape)}")
        return t

    def on(self, device: str | torch.device) -> "Problem":
        """This problem with its tensor attributes (data, matrices) on ``device``, for the estimators' oracles;
        ``self`` on CPU. A shallow copy: ground truth stays with the CPU original. Tensors held in dicts, lists
        and tuples (a problem's tables) move too, in new containers, so the CPU original is untouched; a problem
        keeping caches of device-specific results resets them in its own ``on``."""
        dev = torch.device(device)
        if dev.type == "cpu":
            return self
        import copy

        q = copy.copy(self)
        for k, v in vars(self).items():
            moved = _to_device(v, dev)
            if moved is not v:
                setattr(q, k, moved)
        return q

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.p.items())
        return f"{self.name}({args})"


class UnrolledProblem(Problem):
    """Base for algorithm-based (unrolled) problems: Target("unrolled", unroll_steps, unroll_lr).

    Subclasses declare the glossary parameters ``unroll_steps`` (r) and ``unroll_lr`` (alpha);
    by default theta = phi_0 (``init_inner(x) = x``) and draws are tasks (stochastic).
    """

    @property
    def target(self) -> Target:
        return Target("unrolled", steps=self.p["unroll_steps"], lr=self.p["unroll_lr"])

    @property
    def stochastic(self) -> bool:
        return True

    def init_inner(self, x: torch.Tensor) -> torch.Tensor:
        return x
