"""Registries of problems, estimators, metrics and claims, with plugin discovery.

Discovery follows benchopt's convention: every module under the ``problems``,
``estimators`` and ``claims`` packages is imported and registers what it defines
through the decorators below; third-party packages plug in through the entry-point
groups ``blobench.problems``, ``blobench.estimators``, ``blobench.claims`` and
``blobench.metrics`` (each entry point names a module to import).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
import sys
from typing import Any, Callable, Generic, TypeVar

from .errors import BlobenchError, UnknownNameError

T = TypeVar("T")

_PACKAGES = {"problem": "problems", "estimator": "estimators", "claim": "claims", "metric": None}
_discovered = False
_plugin_files: dict[str, str] = {}  # registered name (kind:name) -> source file


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name:
            raise BlobenchError(f"{self.kind} names must be non-empty strings, got {name!r}")
        self._items[name] = obj
        mod = sys.modules.get(getattr(obj, "__module__", ""), None)
        if mod is not None and getattr(mod, "__file__", None):
            _plugin_files[f"{self.kind}:{name}"] = mod.__file__
        return obj

    def get(self, name: str) -> T:
        discover()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items)) or 'none'})"
            )
        return self._items[name]

    def names(self) -> list[str]:
        discover()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        discover()
        return name in self._items


PROBLEMS: Registry[type] = Registry("problem")
ESTIMATORS: Registry[type] = Registry("estimator")
METRICS: Registry[Callable[..., Any]] = Registry("metric")
CLAIMS: Registry[type] = Registry("claim")


def _decorator(reg: Registry, name: str):
    def deco(obj):
        obj.name = name
        reg.register(name, obj)
        return obj

    return deco


def register_problem(name: str):
    """Class decorator: ``@register_problem("quadratic")``."""
    return _decorator(PROBLEMS, name)


def register_estimator(name: str):
    """Class decorator: ``@register_estimator("aid-cg")``."""
    return _decorator(ESTIMATORS, name)


def register_metric(name: str):
    """Function decorator for metrics: ``fn(problem, estimator, *, seed, device, **params) -> list[dict]``."""

    def deco(fn):
        fn.metric_name = name
        METRICS.register(name, fn)
        return fn

    return deco


def register_claim(name: str):
    """Class decorator for claims (see harness.claims.Claim)."""
    return _decorator(CLAIMS, name)


def plugin_file(kind: str, name: str) -> str | None:
    """Source file that registered ``kind:name`` (used for cache keys and reports)."""
    discover()
    return _plugin_files.get(f"{kind}:{name}")


def discover(force: bool = False) -> None:
    """Import every built-in plugin module and every entry-point plugin, once."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    importlib.import_module("harness.measures")
    importlib.import_module("harness.outer")
    for pkg_name in ("problems", "estimators", "claims"):
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")
    for group in ("blobench.problems", "blobench.estimators", "blobench.claims", "blobench.metrics"):
        for ep in importlib.metadata.entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the harness down
                print(f"blobench: warning: plugin {ep.name!r} ({ep.value}) failed to load: {exc}", file=sys.stderr)


def load_plugin_file(path: str) -> None:
    """Import a plugin module from a file path (``blobench --plugin FILE``)."""
    import importlib.util
    import os

    if not os.path.isfile(path):
        raise BlobenchError(f"plugin file {path!r} does not exist")
    modname = "blobench_plugin_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
