"""Claims: theorems of the literature as executable checks (docs/design.md, "Claim").

A claim states something with its citation, runs an experiment at a budget size
("ci": a minute or less, "full": paper scale), and decides with a stated rule. Every
claim has a negative control: the same experiment on a perturbed estimator or problem,
on which the same rule must NOT hold. A claim records its expected outcome ("holds" or
"not reproduced" with the evidence); the gate fails when the measured outcome differs
from the recorded one, or when a negative control passes.

Subclass :class:`Claim`, register with ``@harness.register_claim("name")`` and implement
``evaluate(size, control) -> Verdict``: ``control=False`` runs the real experiment,
``control=True`` the negative control.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from blobench.core.errors import BlobenchError
from blobench.core.registry import CLAIMS

SIZES = ("ci", "full")

#: every memo a claims module keeps across runs (results shared by a claim and its control, or by two claims)
_MEMOS: list[Any] = []


def memo(cache: Any = None) -> Any:
    """Register a claims module's memo (a dict, by default a new one, or a ``functools.lru_cache`` function) so that
    :func:`clear_memos` empties it. The mutation suite clears every memo before and after each mutation: a result
    computed under a breakage must never be handed to a later, unbroken run (nor a clean one to a broken run)."""
    cache = {} if cache is None else cache
    _MEMOS.append(cache)
    return cache


def clear_memos() -> None:
    """Empty every registered memo (:func:`memo`)."""
    for c in _MEMOS:
        (c.cache_clear if hasattr(c, "cache_clear") else c.clear)()


@dataclass
class Verdict:
    """Outcome of one decision rule: holds, the measured and predicted figures (text), evidence.

    ``rates``: every rate or exponent the claim fitted, each a dict with the columns of
    :meth:`blobench.measure.metrics.RateFit.columns` (``name``, ``rate``, ``rate_lo``, ``rate_hi``, ``rate_bound``,
    ``rate_violation``): ``blobench check`` and the report flag a fitted rate whose interval lies beyond its
    theoretical bound, whatever the claim's own rule decides.
    """

    holds: bool
    measured: str
    predicted: str
    evidence: dict[str, Any] = field(default_factory=dict)
    rates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClaimResult:
    name: str
    citation: str
    statement: str
    expected: str
    outcome: str
    measured: str
    predicted: str
    control: str
    control_holds: bool
    passed: bool
    seconds: float
    evidence: dict[str, Any] = field(default_factory=dict)
    #: the main experiment's fitted rates (see :class:`Verdict`); the control's are in evidence["control_rates"]
    rates: list[dict[str, Any]] = field(default_factory=list)
    #: the positive control's verdict (None: the claim has none); it must hold for the gate to pass
    positive_holds: bool | None = None

    @property
    def rate_violations(self) -> list[dict[str, Any]]:
        """The main experiment's fitted rates whose interval lies beyond their theoretical bound."""
        return [r for r in self.rates if _as_bool(r.get("rate_violation", False))]

    def violation_lines(self) -> list[str]:
        """``RATE VIOLATION <claim>: <name> <rate> [lo, hi] beyond its bound <b>``, one per violation."""
        out = []
        for v in self.rate_violations:
            lo, hi = float(v.get("rate_lo", float("nan"))), float(v.get("rate_hi", float("nan")))
            ci = f" [{lo:.4g}, {hi:.4g}]" if lo == lo else " (no interval)"
            out.append(f"RATE VIOLATION {self.name}: {v.get('name', 'rate')} {float(v['rate']):.4g}{ci} "
                       f"beyond its bound {float(v['rate_bound']):.4g}")
        return out

    def rates_text(self) -> str:
        """One cell: each fitted rate with its interval and bound; violations marked."""
        if not self.rates:
            return "-"
        out = []
        for r in self.rates:
            lo, hi, b = (float(r.get(k, float("nan"))) for k in ("rate_lo", "rate_hi", "rate_bound"))
            s = f"{r.get('name', 'rate')} {float(r['rate']):.3g}"
            if lo == lo:
                s += f" [{lo:.3g}, {hi:.3g}]"
            if b == b:
                s += f" (bound {b:.3g})"
            if _as_bool(r.get("rate_violation", False)):
                s += " VIOLATION"
            out.append(s)
        return "; ".join(out)

    def row(self) -> dict[str, Any]:
        return {"claim": self.name, "citation": self.citation, "measured": self.measured,
                "predicted": self.predicted, "expected": self.expected, "outcome": self.outcome,
                "control": self.control, "control_verdict": "holds (BAD)" if self.control_holds else "fails (good)",
                "gate": "PASS" if self.passed else "FAIL", "seconds": round(self.seconds, 1),
                "rates": self.rates_text(), "rate_violation": bool(self.rate_violations)}

    def to_dict(self) -> dict[str, Any]:
        """Every field (evidence included), JSON-ready: what ``save_results`` writes."""
        return asdict(self)

    def why(self) -> str:
        """One line saying why the gate failed ("" when it passed)."""
        if self.passed:
            return ""
        if self.outcome.startswith("error:"):
            return f"the claim raised ({self.outcome[7:]})"
        if self.outcome != self.expected:
            return f"measured outcome {self.outcome!r} differs from recorded {self.expected!r}"
        if self.positive_holds is False:
            return "its positive control fails: the rule does not see the effect where it provably exists"
        return f"its negative control ({self.control}) holds: the rule cannot discriminate"


def _jsonable(o: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists; anything else as its str."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        if v not in ("True", "False", "true", "false"):
            raise ValueError(f"not a boolean: {v!r}")
        return v in ("True", "true")
    return bool(v)


def save_results(results: list[ClaimResult], path: str | Path, size: str = "ci") -> Path:
    """Write claim results to a JSON file (``{"size": ..., "results": [...]}``) that reports read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"size": size, "results": [r.to_dict() for r in results]}, indent=1, default=_jsonable))
    return path


def load_results(path: str | Path) -> list[ClaimResult]:
    """Read a JSON file written by :func:`save_results`."""
    try:
        data = json.loads(Path(path).read_text())
        out = [ClaimResult(**r) for r in data["results"]]
        for r in out:
            r.control_holds, r.passed = _as_bool(r.control_holds), _as_bool(r.passed)
            if r.positive_holds is not None:
                r.positive_holds = _as_bool(r.positive_holds)
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BlobenchError(f"{path}: not a claims results file ({type(exc).__name__}: {exc})") from None


class Claim:
    name: ClassVar[str] = "?"
    citation: ClassVar[str] = ""
    statement: ClassVar[str] = ""
    #: "holds", or "not reproduced" (then ``evidence_note`` says what was seen)
    expected: ClassVar[str] = "holds"
    evidence_note: ClassVar[str] = ""
    #: what the negative control perturbs
    control: ClassVar[str] = ""
    #: optional positive control: a setting where the effect provably exists, on which the rule must HOLD
    #: (so that a bug that flattens the measured effect cannot pass a "not reproduced" claim); "" = none
    positive_control: ClassVar[str] = ""

    def evaluate(self, size: str, control: bool) -> Verdict:
        raise NotImplementedError

    def evaluate_positive(self, size: str) -> Verdict | None:
        """The positive control's verdict (None when the claim has none)."""
        return None

    def run(self, size: str = "ci") -> ClaimResult:
        if size not in SIZES:
            raise BlobenchError(f"claim size must be one of {SIZES}, got {size!r}")
        t0 = time.perf_counter()
        v = self.evaluate(size, control=False)
        c = self.evaluate(size, control=True)
        pos = self.evaluate_positive(size)
        v.holds, c.holds = bool(v.holds), bool(c.holds)  # numpy bools would not survive JSON as bools
        outcome = "holds" if v.holds else "not reproduced"
        # A "not reproduced" claim's control is the counterfactual on which the statement would hold;
        # it must fail as well for the rule to be shown able to discriminate. A positive control, where
        # the effect provably exists, must hold.
        pos_holds = None if pos is None else bool(pos.holds)
        passed = (outcome == self.expected) and not c.holds and pos_holds is not False
        ev = {"main": v.evidence, "control": c.evidence, "control_measured": c.measured, "control_rates": c.rates}
        if pos is not None:
            ev.update({"positive": pos.evidence, "positive_measured": pos.measured, "positive_holds": pos_holds})
        return ClaimResult(self.name, self.citation, self.statement, self.expected, outcome, v.measured, v.predicted,
                           self.control, c.holds, passed, time.perf_counter() - t0, ev, list(v.rates), pos_holds)


def check(names: list[str] | None = None, size: str = "ci", errors: str = "raise") -> list[ClaimResult]:
    """Run the named claims (all registered ones by default) at ``size``; unknown names raise before any runs.

    ``errors="record"`` turns an exception inside a claim into a failing result (outcome ``"error: ..."``)
    so that one broken claim does not hide the others (``blobench report --claims`` uses it).
    """
    if errors not in ("raise", "record"):
        raise BlobenchError(f"errors must be 'raise' or 'record', got {errors!r}")
    names = list(names) if names else CLAIMS.names()
    classes = [CLAIMS.get(n) for n in names]  # unknown names fail before anything runs
    out = []
    for cls in classes:
        if errors == "raise":
            out.append(cls().run(size))
            continue
        t0 = time.perf_counter()
        try:
            out.append(cls().run(size))
        except BlobenchError:
            raise
        except Exception as exc:  # recorded, not raised: the gate still fails on it
            msg = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:200]
            out.append(ClaimResult(cls.name, cls.citation, cls.statement, cls.expected, msg, "-", "-", cls.control,
                                   False, False, time.perf_counter() - t0, {"error": msg}))
    return out
