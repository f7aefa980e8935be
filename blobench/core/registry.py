"""Registries of problems, estimators, metrics and claims, with plugin discovery.

Discovery follows benchopt's convention: every module under the ``problems``,
``estimators`` and ``claims`` packages is imported and registers what it defines
through the decorators below; third-party packages plug in through the entry-point
groups ``blobench.problems``, ``blobench.estimators``, ``blobench.claims`` and
``blobench.metrics`` (each entry point names a module to import).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Generic, TypeVar

from blobench.core.errors import BlobenchError, UnknownNameError

T = TypeVar("T")

_discovered = False
_plugin_files: dict[str, str] = {}  # registered name (kind:name) -> source file
#: plugin file (absolute path) -> sha256 (hex) of the source bytes this process executed (load_plugin_file): what a
#: cell ran, which the runner compares with the digest its cell key was made from (issue 23)
PLUGIN_DIGESTS: dict[str, str] = {}


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name:
            raise BlobenchError(f"{self.kind} names must be non-empty strings, got {name!r}")
        check_contract(self.kind, name, obj)
        old = self._items.get(name)
        old_mod = getattr(old, "__module__", "") or ""
        new_mod = getattr(obj, "__module__", "") or ""
        if old is not None and old is not obj and old_mod != new_mod and old_mod.startswith("blobench."):
            from blobench.core.errors import PluginError

            where = _plugin_files.get(f"{self.kind}:{name}", old_mod)
            raise PluginError(f"{self.kind} {name!r} is a built-in name (defined in {where}); a plugin cannot replace "
                              "it: register yours under another name")
        self._items[name] = obj
        mod = sys.modules.get(getattr(obj, "__module__", ""), None)
        if mod is not None and getattr(mod, "__file__", None):
            _plugin_files[f"{self.kind}:{name}"] = str(mod.__file__)
        return obj

    def get(self, name: str) -> T:
        import difflib

        discover()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items)) or 'none'}; "
                "if a plugin file defines it, pass --plugin FILE or set BLOBENCH_PLUGINS)"
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
_REGS: dict[str, Registry[Any]] = {"problem": PROBLEMS, "estimator": ESTIMATORS, "metric": METRICS, "claim": CLAIMS}


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


#: the module whose ``discover_all()`` imports the built-in and entry-point plugins (blobench.engine.discovery). The
#: registry itself imports no other harness module: it is the leaf that measures, outer and every plugin
#: import, and the one place that imports them all is blobench.engine.discovery (set by blobench/harness.py).
_discoverer = "blobench.engine.discovery"


def set_discoverer(module: str) -> None:
    global _discoverer
    _discoverer = module


def discover(force: bool = False) -> None:
    """Import every built-in plugin module and every entry-point plugin, once (see blobench.engine.discovery)."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    importlib.import_module(_discoverer).discover_all()


def _check_params(owner: str, params: Any) -> None:
    from blobench.core.errors import PluginError
    from blobench.core.params import _MISSING, Param

    if not isinstance(params, dict):
        raise PluginError(f"{owner}: 'params' must be a dict of harness.Param, got {type(params).__name__}")
    for k, v in params.items():
        if not isinstance(k, str) or not isinstance(v, Param):
            raise PluginError(f"{owner}: params[{k!r}] must be a harness.Param (e.g. Param('int', default=3)), "
                              f"got {v!r}")
        kinds = v.kind if isinstance(v.kind, tuple) else (v.kind,)
        bad = [x for x in kinds if x not in ("int", "float", "str", "bool", "list")]
        if bad:
            raise PluginError(f"{owner}: params[{k!r}] has unknown kind {bad[0]!r} (allowed: int, float, str, bool, list)")
        if v.default is not _MISSING and v.default is not None:
            try:
                v.coerce(owner, k, v.default)
            except BlobenchError as exc:
                raise PluginError(f"{owner}: the default of params[{k!r}] is invalid: {exc}") from None


def check_contract(kind: str, name: str, obj: Any) -> None:
    """The plugin contract, checked when a plugin registers (one PluginError line, never a later traceback):
    problems and estimators are subclasses of harness.Problem / harness.Estimator that implement their
    required methods and declare ``params`` as a dict of harness.Param; metrics are callables."""
    from blobench.core.errors import PluginError

    owner = f"{kind} {name!r}"
    if kind in ("problem", "estimator"):
        base: type
        required: tuple[str, ...]
        if kind == "problem":
            from blobench.core.problem_base import Problem

            base = Problem
            required = ("outer", "inner", "value", "hypergradient")
        else:
            from blobench.core.estimator_base import Estimator

            base = Estimator
            required = ("estimate",)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(f"{owner}: must be a class derived from harness.{base.__name__}, got {obj!r}")
        missing = [m for m in required if getattr(obj, m, None) is getattr(base, m)]
        if missing:
            raise PluginError(f"{owner}: does not implement {', '.join(missing)} (required of every {kind})")
        _check_params(owner, getattr(obj, "params", {}))
    elif kind == "metric":
        if not callable(obj):
            raise PluginError(f"{owner}: must be a function fn(ctx, **params) -> list[dict]")
        if hasattr(obj, "params"):
            _check_params(owner, obj.params)


def check_problem_instance(p: Any) -> None:
    """Contract of a built problem: positive integer ``dim_x`` / ``dim_y`` and ``x0()`` of shape (dim_x,)."""
    from blobench.core.errors import PluginError

    owner = f"problem {getattr(p, 'name', '?')!r}"
    for attr in ("dim_x", "dim_y"):
        v = getattr(p, attr, None)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            got = "is not set" if v is None else f"is {v!r}"
            raise PluginError(f"{owner}: {attr} {got}; a problem sets dim_x and dim_y (positive integers), "
                              "e.g. in setup()")
    x = p.x0()
    shape = tuple(getattr(x, "shape", ()))
    if shape != (p.dim_x,):
        raise PluginError(f"{owner}: x0() has shape {shape}; expected ({p.dim_x},)")


def _tiny_call(kind: str, name: str, obj: Any, path: str) -> None:
    """Shapes on a tiny call: build a plugin problem from its defaults and check dim_x/dim_y, x0 and the
    hypergradient's shape. Only contract violations fail; a default build that raises for another reason
    (a missing data file, a required parameter) is left to the cells that use the problem."""
    from blobench.core.errors import PluginError
    from blobench.core.params import Param  # noqa: F401

    if kind != "problem" or any(p.required for p in getattr(obj, "params", {}).values()):
        return
    try:
        prob = obj()
    except PluginError as exc:
        raise PluginError(f"plugin file {path}: {exc}") from None
    except Exception:  # noqa: BLE001 - not a contract question
        return
    try:
        check_problem_instance(prob)
    except PluginError as exc:
        raise PluginError(f"plugin file {path}: {exc}") from None
    except Exception:  # noqa: BLE001
        return
    try:
        g = prob.hypergradient(prob.x0())
    except Exception:  # noqa: BLE001
        return
    shape = tuple(getattr(g, "shape", ()))
    if shape != (prob.dim_x,):
        raise PluginError(f"plugin file {path}: problem {name!r}: hypergradient(x) has shape {shape}; "
                          f"expected ({prob.dim_x},)")


def load_plugin_file(path: str, check: bool = True) -> None:
    """Import a plugin module from a file path (``blobench --plugin FILE``).

    Any failure (a syntax error, an exception at import, a contract violation at registration)
    is one PluginError naming the file. ``check``: also build each problem the file registers
    from its defaults and check its shapes (done once, in the main process).
    """
    import importlib.util
    import os

    from blobench.core.errors import PluginError

    if not os.path.isfile(path):
        raise BlobenchError(f"plugin file {path!r} does not exist")
    discover()
    before = {kind: dict(reg._items) for kind, reg in _REGS.items()}
    modname = "blobench_plugin_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path!r} cannot be imported (is it a .py file?)")
    mod = importlib.util.module_from_spec(spec)
    try:  # execute exactly the bytes that are hashed (a file edited meanwhile cannot slip in between)
        src = open(path, "rb").read()
    except OSError as exc:
        raise PluginError(f"plugin file {path!r} cannot be read ({exc.strerror or exc})") from None
    import hashlib

    sys.modules[modname] = mod
    try:
        exec(compile(src, path, "exec"), mod.__dict__)  # noqa: S102 - importing the user's plugin is the point
        PLUGIN_DIGESTS[os.path.abspath(path)] = hashlib.sha256(src).hexdigest()
    except SyntaxError as exc:
        sys.modules.pop(modname, None)
        raise PluginError(f"plugin file {path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except PluginError as exc:
        sys.modules.pop(modname, None)
        msg = str(exc)
        raise PluginError(msg if msg.startswith("plugin file") else f"plugin file {path}: {msg}") from None
    except BlobenchError:
        sys.modules.pop(modname, None)
        raise
    except SystemExit as exc:  # a plugin calling sys.exit() at import must not end the command silently
        sys.modules.pop(modname, None)
        raise PluginError(f"plugin file {path} called sys.exit({exc.code!r}) while being imported") from None
    except Exception as exc:  # noqa: BLE001 - a broken plugin is one line, not a traceback
        sys.modules.pop(modname, None)
        from blobench.core.renames import hint

        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except OSError:
            text = None
        fix = hint(exc, text)
        if fix:
            raise PluginError(f"plugin file {path} {fix}") from None
        raise PluginError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from None
    if check:
        for kind, reg in _REGS.items():
            for n, obj in reg._items.items():
                if before[kind].get(n) is not obj:
                    _tiny_call(kind, n, obj, path)


# -- a cached catalog, so `blobench list` and `describe` need neither torch nor the plugins ----------------------

_KIND_PLURAL = {"problem": "problems", "estimator": "estimators", "metric": "metrics", "claim": "claims"}


def describe_text(kind: str, name: str, obj: Any) -> str:
    """What ``blobench describe NAME`` prints for one registered object."""
    out = [f"{kind} {name}"]
    doc = (getattr(obj, "__doc__", None) or "").strip()
    mod = sys.modules.get(getattr(obj, "__module__", ""), None)
    mdoc = (mod.__doc__ or "").strip() if mod else ""
    out.append("\n" + (doc or "(no docstring)"))
    if mdoc and kind in ("problem", "estimator"):
        out.append("\n" + mdoc)
    if kind == "claim":
        out.append(f"\ncitation: {obj.citation}\nstatement: {obj.statement}\nexpected: {obj.expected}")
        if obj.evidence_note:
            out.append(f"evidence: {obj.evidence_note}")
        out.append(f"negative control: {obj.control}")
    params = getattr(obj, "params", {})
    if params:
        out.append("\nparameters:")
        for n, p in params.items():
            out.append(f"  {n:14s} {p.describe():40s} {p.doc}")
    return "\n".join(out)


def _cache_dir():
    import os
    from pathlib import Path

    d = os.environ.get("BLOBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "blobench")
    return Path(d)


def _fingerprint() -> str:
    """Changes whenever anything the catalog shows could: the harness and built-in plugin files (path, mtime,
    size), the installed entry-point plugins, the interpreter."""
    import hashlib
    import os

    parts = [sys.executable, sys.version, "catalog-1"]
    root = os.path.dirname(os.path.dirname(__file__))  # the blobench package: engine and built-in plugins
    dirs = sorted(dp for dp, _, _ in os.walk(root) if "__pycache__" not in dp)
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if n.endswith(".py"):
                st = os.stat(os.path.join(d, n))
                parts.append(f"{d}/{n}:{st.st_mtime_ns}:{st.st_size}")
    for d in sys.path:  # installing or removing a package (an entry-point plugin) changes its folder's mtime
        if not d.rstrip("/").endswith(("site-packages", "dist-packages")):
            continue  # the working folder and friends change all the time
        try:
            parts.append(f"{d}:{os.stat(d or '.').st_mtime_ns}")
        except OSError:
            continue
    parts += _entry_point_lines()
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _entry_point_lines() -> list[str]:
    """The installed entry points of blobench's plugin groups, with their distributions' versions, read from the
    package metadata (no plugin imported). Issue 23: the fingerprint used only the site-packages folders' mtimes, so
    a plugin installed into a user site, a PYTHONPATH folder or an existing dist-info in place was missed and
    ``list``/``describe`` kept serving the old catalog."""
    import importlib.metadata

    out = []
    try:
        for group in sorted(f"blobench.{plural}" for plural in _KIND_PLURAL.values()):  # discovery's GROUPS
            for ep in importlib.metadata.entry_points(group=group):
                dist = getattr(ep, "dist", None)
                ver = f"{dist.name}=={dist.version}" if dist is not None else ""
                out.append(f"ep:{group}:{ep.name}={ep.value}:{ver}")
    except Exception:  # noqa: BLE001 - broken metadata: no cache key from it (discover() reports it when it runs)
        out.append("ep:unreadable")
    return sorted(out)


def _install_id() -> str:
    """This installation (interpreter and package folder): cache files of other installations sharing the cache
    folder are left alone (issue 23: two installs deleted each other's catalog on every call)."""
    import hashlib
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return hashlib.sha256(f"{sys.executable}\n{root}".encode()).hexdigest()[:10]


def _cache_path():
    """The catalog cache file of this installation and fingerprint."""
    return _cache_dir() / f"catalog-{_install_id()}-{_fingerprint()}.json"


def catalog(live: bool = False) -> dict[str, dict[str, str]]:
    """{kind: {name: describe text}} of every registered plugin. Served from a cache keyed on
    :func:`_fingerprint` (no torch import) unless ``live`` (plugin files were loaded) or the cache is stale;
    a rebuild imports every plugin once and refreshes the cache (best effort: an unwritable cache is skipped)."""
    import json

    from blobench.core.fileio import atomic_write_bytes

    path = None
    if not live:
        try:
            path = _cache_path()
            cached = json.loads(path.read_text())
            # a cache of another shape (another blobench version, a hand-edited or foreign file) is rebuilt, never
            # trusted: before, `list` and `describe` ended in a KeyError/AttributeError traceback on one
            if (isinstance(cached, dict) and set(cached) == set(_REGS)
                    and all(isinstance(v, dict) and all(isinstance(t, str) for t in v.values()) for v in cached.values())):
                return cached
        except (OSError, ValueError):
            pass
    discover()
    cat = {kind: {n: describe_text(kind, n, reg._items[n]) for n in sorted(reg._items)} for kind, reg in _REGS.items()}
    if path is not None:
        try:
            for old in path.parent.glob(f"catalog-{_install_id()}-*.json"):  # this installation's stale ones only
                old.unlink()
            atomic_write_bytes(path, json.dumps(cat).encode())
        except OSError:
            pass
    return cat
