"""``blobench verify``: a conformance battery for any estimator or problem (issue 22).

    from blobench.gate.verify import verify
    res = verify(["aid-cg"], size="ci")          # or a problem name, or several names
    res.ok, res.failures(), res.rows             # Check rows: (subject, property, problem, verdict, ...)

An estimator is run through :func:`~blobench.gate.verify.battery_estimator.estimator_battery` on every
compatible instance of :data:`~blobench.gate.verify.common.CI_INSTANCES` (``--problems`` restricts or extends
them); a problem through :func:`~blobench.gate.verify.battery_problem.problem_battery`. Output formats live in
:mod:`blobench.gate.verify.card`. docs/verify.md lists every property with its rule and tolerance.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from blobench.gate.verify.common import ERROR, FAIL, NA, PASS, SIZES, Check, Instance, instances


@dataclass
class VerifyResult:
    rows: list[Check] = field(default_factory=list)
    size: str = "ci"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(r.failed for r in self.rows)

    def failures(self) -> list[Check]:
        return [r for r in self.rows if r.failed]

    def subjects(self) -> list[str]:
        return list(dict.fromkeys(r.subject for r in self.rows))


def kind_of(name: str) -> str:
    """'estimator' or 'problem' (a name registered as both is an estimator); BlobenchError if neither."""
    from blobench.core import api
    from blobench.core.errors import BlobenchError

    if name in api.estimators():
        return "estimator"
    if name in api.problems():
        return "problem"
    raise BlobenchError(f"unknown estimator or problem {name!r} (see `blobench list`; a plugin file needs --plugin FILE)")


def verify_estimator(name: str, size: str = "ci", problems: Iterable[str] | None = None,
                     params: dict | None = None, progress=None) -> list[Check]:
    from blobench.core import api
    from blobench.gate.verify.battery_estimator import estimator_battery

    sz = SIZES[size]
    est = api.estimator(name, **(params or {}))
    rows: list[Check] = []
    skip: set[str] = set()
    for inst in instances(size, list(problems) if problems else None):
        try:
            problem = inst.build()
        except Exception as exc:  # noqa: BLE001 - a problem that cannot be built (data missing) is n/a, one line
            rows.append(Check(name, "estimator", "runs", inst.label, NA, measured=f"problem not built: {exc}"[:200]))
            continue
        out = estimator_battery(name, est, inst, problem, sz, frozenset(skip))
        if any(r.prop == "outer_loop" and r.verdict != NA for r in out):
            skip.add("outer_loop")  # one outer-loop run per estimator (the first eligible instance)
        rows.extend(out)
        if progress:
            progress(name, inst.label, out)
    return rows


def verify_problem(name: str, size: str = "ci", params: dict | None = None, label: str | None = None) -> list[Check]:
    from blobench.core import api
    from blobench.gate.verify.battery_problem import problem_battery

    try:
        problem = api.problem(name, **(params or {}))
    except Exception as exc:  # noqa: BLE001 - one row, one line
        from blobench.core.data import DataError

        verdict = NA if isinstance(exc, DataError) else ERROR
        return [Check(name, "problem", "basics", label or name, verdict, measured=f"{type(exc).__name__}: {exc}"[:300])]
    return problem_battery(label or name, problem, SIZES[size])


def verify(names: Iterable[str], size: str = "ci", problems: Iterable[str] | None = None, progress=None) -> VerifyResult:
    """Run the battery on each name (an estimator or a problem). Unknown names raise BlobenchError."""
    from blobench.core.errors import ParameterError

    if size not in SIZES:
        raise ParameterError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    names = list(names)
    kinds = [kind_of(n) for n in names]  # every name checked before any work
    t0 = time.perf_counter()
    res = VerifyResult(size=size)
    for n, k in zip(names, kinds):
        if k == "estimator":
            res.rows.extend(verify_estimator(n, size, problems, progress=progress))
        else:
            res.rows.extend(verify_problem(n, size))
    res.seconds = time.perf_counter() - t0
    return res


__all__ = ["kind_of", "verify", "verify_estimator", "verify_problem", "VerifyResult", "Check", "Instance", "PASS", "FAIL", "NA", "ERROR"]
