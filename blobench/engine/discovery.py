"""Discovery of the built-in and installed plugins: the one module that imports both the registry and the
modules that register into it (the built-in metrics of blobench.measure.metrics and blobench.measure.outer, which register
where they are defined, and every module of the problems, estimators and claims packages), so the
registry never imports them back (issue 16: no import circle registry <-> measures/outer).

Discovery follows benchopt's convention: every module under the ``problems``, ``estimators`` and
``claims`` packages is imported; third-party packages plug in through the entry-point groups
``blobench.problems``, ``blobench.estimators``, ``blobench.claims`` and ``blobench.metrics``.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys

from blobench.core import registry  # noqa: F401
# the built-in metrics register themselves on import (complexity is built on outer's loop, and imports it)
from blobench.measure import complexity, metrics, outer  # noqa: F401

PACKAGES = ("blobench.problems", "blobench.estimators", "blobench.claims")
GROUPS = ("blobench.problems", "blobench.estimators", "blobench.claims", "blobench.metrics")


def _import_builtin(name: str) -> None:
    """Import one module of a plugin package; a module that does not import (the README's one-file way: a new
    ``estimators/my_method.py`` with a syntax error) is one PluginError naming its file and line, not a traceback
    out of ``list``, ``describe`` or ``run``."""
    from blobench.core.errors import BlobenchError, PluginError

    try:
        importlib.import_module(name)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise PluginError(f"{exc.filename or name}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except BlobenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - plugin code: one line
        sys.modules.pop(name, None)
        spec = importlib.util.find_spec(name)
        where = getattr(spec, "origin", None) or name
        raise PluginError(f"{where} failed to import: {type(exc).__name__}: {exc}") from None


def discover_all() -> None:
    """Import every built-in plugin module and every entry-point plugin (called once, by registry.discover)."""
    for pkg_name in PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                _import_builtin(f"{pkg_name}.{info.name}")
    for group in GROUPS:
        for ep in importlib.metadata.entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the harness down
                from blobench.core.renames import hint

                why = hint(exc) or f"failed to load: {exc}"
                print(f"blobench: warning: plugin {ep.name!r} ({ep.value}) {why}", file=sys.stderr)
