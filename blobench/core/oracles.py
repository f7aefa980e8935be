"""Counted first- and second-order oracles (the complexity measures of Ji et al. 2021).

Estimators see a problem only through an :class:`Oracles` object, which counts
    grad_x_f  Gc(f), x part     grad_y_f  Gc(f), y part     grad_y_g  Gc(g)
    hvp       HV: grad2_yy g v  jvp       JV: grad2_xy g v (the cross product, a dim_x vector)
    exact     calls of the problem's own ground truth (the ``exact`` estimator only)
and, for fully first-order, penalty, value-function and zeroth-order methods (issue 15),
    grad_x_g  Gc(g), x part     f_value / g_value  function values (one per point evaluated)
All oracles are built from torch.func transforms so that they compose with vmap.
Under vmap an oracle call is counted once per batched call, i.e. once per draw.

Second-order products at one point reuse one linearisation (:meth:`Oracles.linearize`): the
gradient graph of grad_y g at (x, y) is built once and each HV / JV is one backward pass through
it, still counted one call each. Outside every torch.func transform (and with no input requiring
grad) the graph is built with plain torch.autograd, which computes the same products without
torch.func's per-call wrapping (same numbers, tested). Where the problem gives closed forms of its oracles
(:meth:`Problem.closed_grad`, :meth:`Problem.closed_second`; :func:`closed_forms`) they replace that plain
autograd path: no graph at all (``blobench verify`` checks them against autograd; simulated-quadratic's keep
autograd's bits). ``Oracles.CLOSED_FORMS = False`` switches them off.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch._C._functorch import peek_interpreter_stack
from torch.func import grad, vjp, vmap

from blobench.core.problem_base import Batch, Problem, Target

ORACLE_NAMES = ("grad_x_f", "grad_y_f", "grad_y_g", "hvp", "jvp", "exact", "grad_x_g", "f_value", "g_value")


def _plain(*ts: Any) -> bool:
    """True outside every torch.func transform, with grad mode on and no tensor requiring grad: there
    plain torch.autograd may build the graph (nothing outside needs to differentiate through it)."""
    if peek_interpreter_stack() is not None or not torch.is_grad_enabled():
        return False
    for t in ts:
        vals = t.values() if isinstance(t, dict) else (t,)
        if any(isinstance(v, torch.Tensor) and v.requires_grad for v in vals):
            return False
    return True


def _grad(fn: Callable, argnums: int | tuple[int, ...], x: torch.Tensor, y: torch.Tensor, batch: Batch) -> Any:
    """torch.func.grad(fn, argnums)(x, y, batch); plain torch.autograd where :func:`_plain` allows (same numbers,
    without torch.func's per-call wrapping)."""
    if not _plain(x, y, batch):
        return grad(fn, argnums=argnums)(x, y, batch)
    with torch.enable_grad():
        args = [x.detach(), y.detach()]
        idx = (argnums,) if isinstance(argnums, int) else argnums
        for i in idx:
            args[i].requires_grad_(True)
        out = fn(args[0], args[1], batch)
        gs = torch.autograd.grad(out, [args[i] for i in idx], allow_unused=True, materialize_grads=True) \
            if out.requires_grad else [torch.zeros_like(args[i]) for i in idx]
    return gs[0] if isinstance(argnums, int) else tuple(gs)


def _second(fn: Callable, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch,
            wrt: str) -> tuple[torch.Tensor, ...]:
    """Products of v with the Jacobian of grad_y fn at (x, y) by plain torch.autograd (callers check :func:`_plain`):
    ``wrt`` "y" (grad2_yy fn v,), "x" (grad2_xy fn v,) or "xy" (grad2_xy fn v, grad2_yy fn v). The same numbers as
    the torch.func vjp it replaces outside transforms (tested), without torch.func's per-call wrapping."""
    with torch.enable_grad():
        xs = x.detach().requires_grad_("x" in wrt)
        ys = y.detach().requires_grad_(True)
        g = torch.autograd.grad(fn(xs, ys, batch), ys, create_graph=True)[0]
        args = tuple(a for k, a in (("x", xs), ("y", ys)) if k in wrt)
        if not g.requires_grad:  # grad_y fn constant in (x, y): every product is zero
            return tuple(torch.zeros_like(a) for a in args)
        return torch.autograd.grad(g, args, grad_outputs=v, allow_unused=True, materialize_grads=True)


def closed_forms(problem: Problem) -> bool:
    """True when ``problem`` gives closed-form oracles (:meth:`Problem.closed_grad`, :meth:`Problem.closed_second`)
    for the objectives it evaluates: the class that defines ``closed_grad`` also defines the ``inner`` and ``outer``
    in use (a subclass or an instance that replaces either gets autograd again)."""
    cls = type(problem)
    if cls.closed_grad is Problem.closed_grad:
        return False
    owner: Any = next(c for c in cls.__mro__ if "closed_grad" in vars(c))
    if cls.inner is not owner.inner or cls.outer is not owner.outer:
        return False
    return "inner" not in vars(problem) and "outer" not in vars(problem)


class _LazyGrad:
    """torch.func.grad(fn, argnums=1), built on first call."""

    def __init__(self, fn: Callable):
        self._fn: Callable = fn
        self._g: Callable | None = None

    def __call__(self, *args: Any) -> Any:
        if self._g is None:
            self._g = grad(self._fn, argnums=1)
        return self._g(*args)


class Linearization:
    """grad_y g linearised at (x, y; batch): its graph is built once, then each product is one
    backward pass through it. ``hv(v)`` = grad2_yy g v (counts one HV), ``jv(v)`` = grad2_xy g v
    (one JV), ``hv_jv(v)`` = both from one pass (one of each). ``value`` is grad_y g(x, y).
    Built by :meth:`Oracles.linearize`.
    """

    def __init__(self, oracles: "Oracles", x: torch.Tensor, y: torch.Tensor, batch: Batch, joint: bool):
        self._o, self._x, self._y, self._batch = oracles, x, y, batch
        self._gy = _LazyGrad(oracles.problem.inner)  # torch.func's grad is built only if a pullback needs it
        self._pulls: dict[str, Callable] = {}
        plain = _plain(x, y, batch)
        self._closed = oracles._closed and plain
        if plain and not self._closed:
            with torch.enable_grad():
                self._xs = x.detach().requires_grad_(True)
                self._ys = y.detach().requires_grad_(True)
                g = torch.autograd.grad(oracles.problem.inner(self._xs, self._ys, batch), self._ys,
                                        create_graph=True)[0]
            self._g = g
            self.value = g.detach()
        elif self._closed:  # the problem's closed forms: no graph (Problem.closed_second)
            self._g = None  # type: ignore[assignment]
            self.value = oracles.problem.closed_grad("g", (1,), x, y, batch)[0]
        else:
            self._g = None  # type: ignore[assignment]  # products then go through the vjp pullbacks
            if joint:
                self.value, self._pulls["xy"] = vjp(lambda x_, y_: self._gy(x_, y_, batch), x, y)
            else:
                self.value, self._pulls["y"] = vjp(lambda y_: self._gy(x, y_, batch), y)

    def _autograd(self, v: torch.Tensor, wrt: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if not self._g.requires_grad:  # grad_y g constant in (x, y): every product is zero
            return tuple(torch.zeros_like(w) for w in wrt)
        return torch.autograd.grad(self._g, wrt, grad_outputs=v, retain_graph=True, allow_unused=True,
                                   materialize_grads=True)

    def _pull(self, kind: str) -> Callable:
        if kind not in self._pulls:
            x, y, b = self._x, self._y, self._batch
            if kind == "y":
                self._pulls[kind] = vjp(lambda y_: self._gy(x, y_, b), y)[1]
            elif kind == "x":
                self._pulls[kind] = vjp(lambda x_: self._gy(x_, y, b), x)[1]
            else:
                self._pulls[kind] = vjp(lambda x_, y_: self._gy(x_, y_, b), x, y)[1]
        return self._pulls[kind]

    def hv(self, v: torch.Tensor) -> torch.Tensor:
        """grad2_yy g(x, y) v: one HV."""
        self._o._count("hvp")
        if self._closed:
            return self._o.problem.closed_second(self._x, self._y, v, self._batch, "y")[0]
        if self._g is not None:
            return self._autograd(v, (self._ys,))[0]
        if "y" not in self._pulls and "xy" in self._pulls:
            return self._pulls["xy"](v)[1]
        return self._pull("y")(v)[0]

    def jv(self, v: torch.Tensor) -> torch.Tensor:
        """grad2_xy g(x, y) v (a dim_x vector): one JV."""
        self._o._count("jvp")
        if self._closed:
            return self._o.problem.closed_second(self._x, self._y, v, self._batch, "x")[0]
        if self._g is not None:
            return self._autograd(v, (self._xs,))[0]
        if "xy" in self._pulls:
            return self._pulls["xy"](v)[0]
        return self._pull("x")(v)[0]

    def hv_jv(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad2_yy g v, grad2_xy g v) from one backward pass: one HV and one JV."""
        self._o._count("hvp")
        self._o._count("jvp")
        if self._closed:
            jx, jy = self._o.problem.closed_second(self._x, self._y, v, self._batch, "xy")
        elif self._g is not None:
            jx, jy = self._autograd(v, (self._xs, self._ys))
        else:
            jx, jy = self._pull("xy")(v)
        return jy, jx


class Oracles:
    #: use a problem's closed-form oracles where it gives them (:func:`closed_forms`); False: autograd everywhere
    #: (the comparison in tests and ``benchmarks/peer_speed.py --closed off``)
    CLOSED_FORMS: ClassVar[bool] = True

    def __init__(self, problem: Problem):
        self.problem = problem
        self.counts: dict[str, int] = dict.fromkeys(ORACLE_NAMES, 0)
        self._closed = self.CLOSED_FORMS and closed_forms(problem)

    # metadata the estimators may read freely
    @property
    def target(self) -> Target:
        return self.problem.target

    @property
    def constants(self) -> dict[str, float]:
        return self.problem.constants

    @property
    def dim_x(self) -> int:
        return self.problem.dim_x

    @property
    def dim_y(self) -> int:
        return self.problem.dim_y

    def reset(self) -> None:
        for k in self.counts:
            self.counts[k] = 0

    def _count(self, name: str, k: int = 1) -> None:
        self.counts[name] += k

    def _first(self, side: str, argnums: int | tuple[int, ...], x: torch.Tensor, y: torch.Tensor,
               batch: Batch) -> Any:
        """Gradient of g (side "g") or f ("f") w.r.t. argnums: the problem's closed form where it has one and plain
        autograd would run (:func:`_plain`), else :func:`_grad`."""
        if self._closed and _plain(x, y, batch):
            out = self.problem.closed_grad(side, (argnums,) if isinstance(argnums, int) else argnums, x, y, batch)
            return out[0] if isinstance(argnums, int) else out
        return _grad(self.problem.inner if side == "g" else self.problem.outer, argnums, x, y, batch)

    def _second(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch, wrt: str) -> tuple:
        """:func:`_second` (plain autograd), or the problem's closed form (:meth:`Problem.closed_second`)."""
        if self._closed:
            return self.problem.closed_second(x, y, v, batch, wrt)
        return _second(self.problem.inner, x, y, v, batch, wrt)

    # -- first order -------------------------------------------------------------------
    def grad_x_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        self._count("grad_x_f")
        return self._first("f", 0, x, y, batch)

    def grad_y_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        self._count("grad_y_f")
        return self._first("f", 1, x, y, batch)

    def grad_f(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_x f, grad_y f) in one backward pass; counts one of each."""
        self._count("grad_x_f")
        self._count("grad_y_f")
        return self._first("f", (0, 1), x, y, batch)

    def grad_y_g(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        self._count("grad_y_g")
        return self._first("g", 1, x, y, batch)

    # -- second order ------------------------------------------------------------------
    def linearize(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None, value: bool = False,
                  joint: bool = False) -> Linearization:
        """grad_y g linearised once at (x, y; batch), for many HV / JV products at that point (CG,
        Neumann, fixed point, the backward pass of unrolling). Building it is no oracle call; each
        product counts one HV / JV. ``value=True`` also hands out grad_y g(x, y) (``.value``) and counts
        that one grad_y g call. ``joint``: the products will be ``hv_jv`` (both at once)."""
        lin = Linearization(self, x, y, batch, joint)
        if value:
            self._count("grad_y_g")
        return lin

    def hvp_operator(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> grad2_yy g(x, y) v with the graph built once (:meth:`linearize`); each call counts one HV."""
        return self.linearize(x, y, batch).hv

    def _gyg(self, batch: Batch):
        return grad(self.problem.inner, argnums=1)

    def hvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """grad2_yy g(x, y) v."""
        self._count("hvp")
        if _plain(x, y, v, batch):
            return self._second(x, y, v, batch, "y")[0]
        gy = grad(self.problem.inner, argnums=1)
        _, pull = vjp(lambda y_: gy(x, y_, batch), y)
        return pull(v)[0]

    def jvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """grad2_xy g(x, y) v = d/dx <grad_y g(x, y), v> (a dim_x vector)."""
        self._count("jvp")
        if _plain(x, y, v, batch):
            return self._second(x, y, v, batch, "x")[0]
        gy = grad(self.problem.inner, argnums=1)
        _, pull = vjp(lambda x_: gy(x_, y, batch), x)
        return pull(v)[0]

    def hvp_jvp(
        self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, batch: Batch = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad2_yy g v, grad2_xy g v) from one vector-Jacobian product; counts one HV and one JV."""
        self._count("hvp")
        self._count("jvp")
        if _plain(x, y, v, batch):
            jx, jy = self._second(x, y, v, batch, "xy")
            return jy, jx
        gy = grad(self.problem.inner, argnums=1)
        _, pull = vjp(lambda x_, y_: gy(x_, y_, batch), x, y)
        jx, jy = pull(v)
        return jy, jx

    # -- first-order in x of g, function values, finite-sum data (issue 15) -------------------
    def grad_x_g(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """grad_x g(x, y): penalty and value-function methods (F2SA, BOME, F2BA)."""
        self._count("grad_x_g")
        return self._first("g", 0, x, y, batch)

    def grad_g(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_x g, grad_y g) in one backward pass; counts one of each."""
        self._count("grad_x_g")
        self._count("grad_y_g")
        return self._first("g", (0, 1), x, y, batch)

    def f_value(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """f(x, y): one function value."""
        self._count("f_value")
        return self.problem.outer(x, y, batch)

    def g_value(self, x: torch.Tensor, y: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """g(x, y): one function value."""
        self._count("g_value")
        return self.problem.inner(x, y, batch)

    def f_values(self, xs: torch.Tensor, ys: torch.Tensor, batch: Batch = None, batched: bool = False) -> torch.Tensor:
        """f(xs[k], ys[k]) for k < K points (e.g. the 2Q points of a smoothing estimator): K function values.
        ``batched``: batch tensors have a leading dim K, point k uses its own minibatch. Counts K."""
        self._count("f_value", int(xs.shape[0]))
        return vmap(self.problem.outer, in_dims=(0, 0, 0 if batched else None))(xs, ys, batch)

    def grad_y_g_points(self, xs: torch.Tensor, ys: torch.Tensor, batch: Batch = None) -> torch.Tensor:
        """grad_y g(xs[k], ys[k]) for k < K points, one batch shared: K gradients (inner solves at the
        perturbed points of zeroth-order methods). Counts K grad_y g."""
        self._count("grad_y_g", int(xs.shape[0]))
        return vmap(grad(self.problem.inner, argnums=1), in_dims=(0, 0, None))(xs, ys, batch)

    def batch_at(self, inner_idx: torch.Tensor, outer_idx: torch.Tensor) -> Batch:
        """The minibatch of a finite-sum problem made of the given sample indices (data access, not an
        oracle call: the oracles evaluated on it are counted)."""
        return self.problem.batch_at(inner_idx, outer_idx)

    @property
    def finite_sum(self) -> tuple[int, int] | None:
        return self.problem.finite_sum

    # -- initialisation of the inner variable (not an oracle of the complexity theory) --
    def init_inner(self, x: torch.Tensor) -> torch.Tensor:
        return self.problem.init_inner(x)

    def init_vjp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(d y_0 / d x)^T v; zero when y_0 does not depend on x."""
        _, pull = vjp(self.problem.init_inner, x)
        return pull(v)[0]

    # -- ground truth --------------------------------------------------------------------
    def exact(self, x: torch.Tensor) -> torch.Tensor:
        self._count("exact")
        return self.problem.hypergradient(x).to(dtype=x.dtype)

    def snapshot(self) -> dict[str, Any]:
        return dict(self.counts)
