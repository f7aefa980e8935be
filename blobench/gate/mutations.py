"""Mutation suite: planted breakages of the estimators and the engine, each of which some claim must catch.

A claim that cannot fail is a defect (docs/design.md, "Claim"); this module checks it from the other side.
Convention: every claims module (``claims/*.py`` and entry-point claim plugins) may define a module-level
list ``MUTATIONS`` of tuples ``(name, caught_by, patch)``:

- ``name``: a unique string (e.g. ``"aid-drop-implicit-term"``);
- ``caught_by``: a tuple of registered claim names, each expected to catch the breakage;
- ``patch``: a zero-argument callable returning a context manager that applies the breakage in-process
  (``unittest.mock.patch.object`` on an estimator, ``blobench.core.numerics`` or ``blobench.core.oracles``) and
  undoes it on exit.

:func:`run_mutations` collects the lists from every module that registered a claim, and for each mutation
runs its catching claims' rule (``evaluate(size, control=False)``, no control) under the patch, stopping at
the first that catches it. A claim catches a mutation when its measured outcome differs from its recorded
``expected`` outcome, when it raises, or, for a claim with a positive control (``evaluate_positive``: where the
effect provably exists, so it must hold), when that positive control fails (the only way a "not reproduced" claim can
see a breakage that flattens its effect). The mutation score is caught / tried; ``blobench check --mutations``
prints it and exits 1 unless every mutation is caught. The score is meaningful only where the unmutated
claims pass the gate (``blobench check``; the fast test suite runs both).
"""
from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

from blobench.core.errors import BlobenchError
from blobench.core.registry import CLAIMS


@dataclass(frozen=True)
class Mutation:
    """One planted breakage: its name, the claims expected to catch it, the patch, and the module defining it."""

    name: str
    caught_by: tuple[str, ...]
    patch: Callable[[], ContextManager]
    module: str


@dataclass
class MutationResult:
    name: str
    module: str
    caught: bool
    caught_by: str | None  # the claim that caught it (None: survived)
    tried: list[str]  # claims run, in order
    outcomes: dict[str, str] = field(default_factory=dict)  # claim -> "outcome: measured" under the mutation
    seconds: float = 0.0

    def line(self) -> str:
        if self.caught:
            return f"CAUGHT   {self.name} by {self.caught_by} ({self.seconds:.1f}s): {self.outcomes[self.caught_by][:160]}"
        return f"SURVIVED {self.name} ({self.seconds:.1f}s); claims run: {', '.join(self.tried)}"


def source_patch(owner: Any, name: str, *edits: tuple[str, str]) -> Callable[[], ContextManager]:
    """A mutation written as an edit of real source: ``owner.name`` (a function or method) recompiled from its own
    source with each ``(old, new)`` text replaced once, in the function's own module globals, and patched in for
    the duration. An edit whose ``old`` text is not found exactly once raises BlobenchError when the patch is
    applied, so a mutation cannot silently stop matching the code it breaks."""
    from unittest import mock

    def patch() -> ContextManager:
        func = inspect.unwrap(getattr(owner, name))
        src = textwrap.dedent(inspect.getsource(func))
        for old, new in edits:
            if src.count(old) != 1:
                raise BlobenchError(f"source_patch {getattr(owner, '__name__', owner)}.{name}: {old!r} occurs "
                                    f"{src.count(old)} times in its source (expected once)")
            src = src.replace(old, new)
        scope: dict[str, Any] = {}
        exec(compile(src, f"<mutation of {func.__qualname__}>", "exec"), func.__globals__, scope)  # noqa: S102
        return mock.patch.object(owner, name, scope[func.__name__])

    return patch


def _claim_modules() -> list[str]:
    return sorted({CLAIMS.get(n).__module__ for n in CLAIMS.names()})


def collect(claims: list[str] | None = None) -> list[Mutation]:
    """Every mutation declared by a module that registers claims; with ``claims``, only those that one of
    them is listed as catching. Malformed entries, duplicate names and unknown claim names raise BlobenchError."""
    want = set(claims) if claims else None
    for n in want or ():
        CLAIMS.get(n)  # unknown names fail before anything runs
    out: list[Mutation] = []
    seen: dict[str, str] = {}
    for modname in _claim_modules():
        mod = sys.modules.get(modname) or importlib.import_module(modname)
        entries = getattr(mod, "MUTATIONS", None)
        if entries is None:
            continue
        if not isinstance(entries, (list, tuple)):
            raise BlobenchError(f"{modname}.MUTATIONS must be a list of (name, caught_by, patch), got {type(entries).__name__}")
        for e in entries:
            ok = (isinstance(e, tuple) and len(e) == 3 and isinstance(e[0], str) and e[0]
                  and isinstance(e[1], tuple) and e[1] and all(isinstance(c, str) for c in e[1]) and callable(e[2]))
            if not ok:
                raise BlobenchError(f"{modname}.MUTATIONS: entry {e!r} is not (name: str, caught_by: tuple[str, ...], patch)")
            name, caught_by, patch = e
            if name in seen:
                raise BlobenchError(f"mutation {name!r} is defined twice ({seen[name]} and {modname})")
            seen[name] = modname
            for c in caught_by:
                if c not in CLAIMS:
                    raise BlobenchError(f"mutation {name!r} ({modname}) names unknown claim {c!r} as catching it")
            if want is None or want & set(caught_by):
                out.append(Mutation(name, tuple(caught_by), patch, modname))
    return out


def run_mutation(m: Mutation, size: str = "ci", all_claims: bool = False) -> MutationResult:
    """Run ``m``'s catching claims (rule only) under its patch; stop at the first catch unless ``all_claims``."""
    t0 = time.perf_counter()
    from blobench.gate.claim_base import clear_memos

    res = MutationResult(m.name, m.module, False, None, [])
    clear_memos()
    try:
        res = _run_patched(m, size, all_claims, res)
    finally:
        clear_memos()  # nothing computed under the breakage survives it
    res.seconds = time.perf_counter() - t0
    return res


def _run_patched(m: Mutation, size: str, all_claims: bool, res: MutationResult) -> MutationResult:
    with m.patch():
        for c in m.caught_by:
            cls = CLAIMS.get(c)
            res.tried.append(c)
            # a "not reproduced" claim's own rule can only flip to "holds": its positive control runs first, and
            # when it fails the (usually longer) rule is not run at all
            outcome = _positive_outcome(cls, size, res, c) if cls.expected != "holds" else None
            if outcome is None:
                outcome = _rule_outcome(cls, size, res, c)
                if outcome == cls.expected and cls.expected == "holds":
                    outcome = _positive_outcome(cls, size, res, c) or outcome
            if outcome != cls.expected and not res.caught:
                res.caught, res.caught_by = True, c
                if not all_claims:
                    break
    return res


def _rule_outcome(cls: Any, size: str, res: MutationResult, c: str) -> str:
    try:
        v = cls().evaluate(size, control=False)
        outcome = "holds" if bool(v.holds) else "not reproduced"
        res.outcomes[c] = f"{outcome}: {v.measured}"
    except BlobenchError:
        raise
    except Exception as exc:  # a claim that crashes under the breakage fails the gate: caught
        outcome = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        res.outcomes[c] = outcome
    return outcome


def _positive_outcome(cls: Any, size: str, res: MutationResult, c: str) -> str | None:
    """A claim with a positive control (where the effect provably exists; the gate needs it to hold) also catches a
    breakage that makes its positive control fail: a "not reproduced" claim's rule cannot see a breakage that
    flattens the effect, its positive control can. Returns the caught outcome, or None when the control holds."""
    if not getattr(cls, "positive_control", ""):
        return None
    try:
        pos = cls().evaluate_positive(size)
    except BlobenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a positive control that crashes under the breakage: caught
        msg = f"error: positive control: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        res.outcomes[c] = msg
        return msg
    if pos is None or bool(pos.holds):
        return None
    res.outcomes[c] = f"positive control fails: {pos.measured}"
    return "positive control fails"


def run_mutations(claims: list[str] | None = None, size: str = "ci", all_claims: bool = False,
                  progress: Callable[[MutationResult], Any] | None = None) -> list[MutationResult]:
    """Run every collected mutation (see :func:`collect`); ``progress`` is called with each result."""
    from blobench.gate.claim_base import SIZES

    if size not in SIZES:
        raise BlobenchError(f"claim size must be one of {SIZES}, got {size!r}")
    out = []
    for m in collect(claims):
        r = run_mutation(m, size, all_claims)
        if progress:
            progress(r)
        out.append(r)
    return out


def score(results: list[MutationResult]) -> str:
    k = sum(r.caught for r in results)
    n = len(results)
    return f"mutation score: {k}/{n} caught" + (f" ({100.0 * k / n:.0f}%)" if n else "")


def main_mutations(claims: list[str] | None = None, size: str = "ci") -> int:
    """``blobench check --mutations``: one line per mutation, then the score; exit 1 unless all are caught."""
    t0 = time.perf_counter()
    results = run_mutations(claims, size, progress=lambda r: print(r.line(), flush=True))
    if not results:
        print("no mutations declared (claims modules define MUTATIONS); nothing to run")
        return 0
    print(f"{score(results)} in {time.perf_counter() - t0:.0f}s")
    for r in results:
        if not r.caught:
            print(f"SURVIVED {r.name} ({r.module}): no claim among {', '.join(r.tried)} caught it")
    return 0 if all(r.caught for r in results) else 1
