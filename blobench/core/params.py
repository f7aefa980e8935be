"""Declared, validated parameters for problems, estimators, metrics and claims.

Every plugin declares ``params = {name: Param(...)}``; :func:`validate` checks a user's
keyword arguments against it, and every error names the parameter and what is allowed.
Names follow the glossary of docs/design.md (inner_steps, inner_lr, solver_steps, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from blobench.core.errors import ParameterError

_MISSING = object()


@dataclass(frozen=True)
class Param:
    """One parameter: its type(s), default and allowed range or choices.

    kind: "int", "float", "str", "bool", or a tuple of those (e.g. ("float", "str") for
    UFO's ``q`` that is a probability or "adaptive"). ``low``/``high`` bound numbers
    (inclusive unless ``low_open``/``high_open``). ``choices`` restricts strings.
    ``default=None`` with ``optional=True`` means "derived from the problem".
    """

    kind: str | tuple[str, ...]
    default: Any = _MISSING
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] | None = None
    optional: bool = False
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    @property
    def required(self) -> bool:
        return self.default is _MISSING and not self.optional

    def describe(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        parts = ["|".join(kinds)]
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            parts.append(("(" if self.low_open else "[") + f"{lo}, {hi}" + (")" if self.high_open else "]"))
        if self.default is not _MISSING:
            parts.append(f"default {self.default!r}")
        elif self.optional:
            parts.append("default: from the problem")
        return " ".join(parts)

    def coerce(self, owner: str, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        for kind in kinds:
            ok, v = _as_kind(kind, value)
            if ok:
                break
        else:
            raise ParameterError(
                f"{owner}: parameter {name!r} must be {self.describe()}, got {value!r} ({type(value).__name__})"
            )
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                raise ParameterError(f"{owner}: parameter {name!r} must be finite, got {v!r}")
            bad = (
                (self.low is not None and (v < self.low or (self.low_open and v == self.low)))
                or (self.high is not None and (v > self.high or (self.high_open and v == self.high)))
            )
            if bad:
                raise ParameterError(f"{owner}: parameter {name!r}={v!r} is out of range; allowed: {self.describe()}")
        if self.choices is not None and isinstance(v, str) and v not in self.choices:
            raise ParameterError(f"{owner}: parameter {name!r}={v!r} is not allowed; allowed: {self.describe()}")
        if self.check is not None:
            msg = self.check(v)
            if msg:
                raise ParameterError(f"{owner}: parameter {name!r}={v!r}: {msg}")
        return v


def _as_kind(kind: str, value: Any) -> tuple[bool, Any]:
    if kind == "bool":
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return True, value.lower() == "true"
        return False, None
    if isinstance(value, bool):
        return False, None
    if kind == "int":
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        if isinstance(value, str):
            try:
                return True, int(value)
            except ValueError:
                return False, None
        return False, None
    if kind == "float":
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if kind == "list":
        return (True, list(value)) if isinstance(value, (list, tuple)) else (False, None)
    if kind == "str":
        return (True, value) if isinstance(value, str) else (False, None)
    raise ValueError(f"unknown parameter kind {kind!r}")


def validate(owner: str, spec: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Return the full parameter dict (defaults filled in) or raise ParameterError."""
    out: dict[str, Any] = {}
    for name in given:
        if name not in spec:
            import difflib

            close = difflib.get_close_matches(name, list(spec), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            allowed = ", ".join(sorted(spec)) or "none"
            raise ParameterError(f"{owner}: unknown parameter {name!r}{hint} (allowed: {allowed})")
    for name, p in spec.items():
        if name in given:
            out[name] = p.coerce(owner, name, given[name])
        elif p.required:
            raise ParameterError(f"{owner}: missing required parameter {name!r} ({p.describe()})")
        else:
            out[name] = None if p.default is _MISSING else p.default
    return out


def parse_value(text: str) -> Any:
    """Parse a CLI ``k=v`` value: int, float, bool, or string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text
