"""Benchmark matrices (TOML) and their expansion into cells.

A matrix file::

    name = "smoke"                 # default run id
    seeds = [0, 1]                 # every experiment runs once per seed ...
    devices = ["cpu"]              # ... and per device

    [[experiment]]
    problem = "quadratic"
    problem_params = { dim = 10, kappa = [10, 100] }     # a list sweeps (cartesian product)
    estimators = ["itd", "aid-cg"]                       # or estimator = "itd"
    estimator_params = { inner_steps = 20 }              # passed to every listed estimator that declares it
    per_estimator = { "aid-cg" = { solver_steps = [5, 10] } }
    metric = "error_vs_budget"
    metric_params = { budget = "inner_steps", values = [1, 2, 4, 8] }   # never swept
    zip = [["inner_steps", "solver_steps"]]   # these lists advance together instead of being crossed

``zip`` takes one group (a list of names) or several (a list of lists); the names of a group
must all be in problem_params, or all be estimator parameters, and their lists must have
equal lengths. An estimator that does not accept some names of a group zips the rest.

A matrix can extend another and override it::

    extends = "default.toml"       # relative to this file
    seeds = [0, 1, 2]              # top-level keys replace the parent's
    drop = ["quadratic-stochastic-bias-variance"]   # parent experiments to leave out
    [[experiment]]
    name = "quadratic-error-vs-inner-steps"        # same name: its keys override the parent's
    problem_params = { dim = 50 }                  # (tables are merged key by key)

Experiments with a new name are appended. Every cell is validated before anything runs; errors name the file, the key and what
is allowed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blobench.core.errors import BlobenchError
from blobench.core.registry import ESTIMATORS

TOP_KEYS = {"name", "description", "seeds", "devices", "experiment", "extends", "drop"}
EXP_KEYS = {"name", "problem", "problem_params", "estimator", "estimators", "estimator_params", "per_estimator",
            "metric", "metric_params", "seeds", "devices", "zip"}
_TABLES = ("problem_params", "estimator_params", "metric_params", "per_estimator")


class MatrixError(BlobenchError):
    pass


@dataclass(frozen=True)
class Cell:
    problem: str
    problem_params: dict[str, Any]
    estimator: str
    estimator_params: dict[str, Any]
    metric: str
    metric_params: dict[str, Any]
    seed: int = 0
    device: str = "cpu"
    experiment: str = ""

    def ident(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("experiment")
        return d

    def key(self, salt: str = "") -> str:
        blob = json.dumps(self.ident(), sort_keys=True, default=str) + salt
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def label(self) -> str:
        pp = ",".join(f"{k}={v}" for k, v in sorted(self.problem_params.items()))
        ep = ",".join(f"{k}={v}" for k, v in sorted(self.estimator_params.items()))
        return f"{self.problem}({pp}) x {self.estimator}({ep}) / {self.metric} seed={self.seed} {self.device}"


@dataclass
class Matrix:
    name: str
    cells: list[Cell]
    source: dict[str, Any] = field(default_factory=dict)
    path: str = "<dict>"


def _sweep(params: dict[str, Any], groups: list[list[str]] | None = None, where: str = "") -> list[dict[str, Any]]:
    """Cartesian product of the list-valued entries, except that each zip group advances together."""
    units: list[list[dict[str, Any]]] = []
    used: set[str] = set()
    for g in groups or []:
        present = [k for k in g if k in params]
        if not present:
            continue
        lists = {k: params[k] if isinstance(params[k], list) else [params[k]] for k in present}
        lens = {len(v) for v in lists.values()}
        _need(len(lens) == 1, where, f"'zip' group {g} needs lists of equal length, got "
              + ", ".join(f"{k}: {len(v)}" for k, v in lists.items()))
        n = lens.pop()
        units.append([{k: lists[k][i] for k in present} for i in range(n)])
        used.update(present)
    for k, v in params.items():
        _need(v != [], where, f"{k!r} is an empty list: it would sweep over no value (the matrix would have 0 cells)")
        if k not in used:
            units.append([{k: x} for x in (v if isinstance(v, list) else [v])])
    out = []
    for combo in itertools.product(*units):
        d: dict[str, Any] = {}
        for part in combo:
            d.update(part)
        out.append({k: d[k] for k in params})
    return out


def _read_toml(path: Path, where: str) -> dict[str, Any]:
    if not path.is_file():
        raise MatrixError(f"matrix file {where!r} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # e.g. a latin-1 file: TOML is UTF-8
        raise MatrixError(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason}); TOML files are UTF-8: re-save "
                          "it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{where}: not valid TOML: {exc}") from exc


def _merge_experiment(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if k in _TABLES and isinstance(v, dict) and isinstance(out.get(k), dict):
            merged = dict(out[k])
            if k == "per_estimator":
                for en, t in v.items():
                    merged[en] = {**merged.get(en, {}), **t} if isinstance(t, dict) and isinstance(merged.get(en), dict) else t
            else:
                merged.update(v)
            out[k] = merged
        else:
            out[k] = v
        if k == "estimator":
            out.pop("estimators", None)
        elif k == "estimators":
            out.pop("estimator", None)
    return out


def resolve_extends(data: dict[str, Any], where: str, base_dir: Path, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Apply ``extends`` (recursively): parent keys, overridden by this file's keys; experiments merged by name."""
    if "extends" not in data:
        return data
    parent_ref = data["extends"]
    _need(isinstance(parent_ref, str) and parent_ref, where, f"'extends' must be a path to a matrix file, got {parent_ref!r}")
    ppath = (base_dir / parent_ref).resolve()
    _need(str(ppath) not in chain, where, f"'extends' makes a cycle: {' -> '.join([*chain, str(ppath)])}")
    parent = resolve_extends(_read_toml(ppath, str(ppath)), str(ppath), ppath.parent, (*chain, str(ppath)))
    out = {k: v for k, v in parent.items() if k not in ("extends", "drop", "name")}
    out.update({k: v for k, v in data.items() if k not in ("extends", "drop", "experiment")})
    exps = [dict(e) for e in parent.get("experiment", []) if isinstance(e, dict)]
    names = [e.get("name") for e in exps]
    drop = data.get("drop", [])
    _need(isinstance(drop, list) and all(isinstance(d, str) for d in drop), where,
          f"'drop' must be a list of experiment names, got {drop!r}")
    for d in drop:
        _need(d in names, where, f"'drop' names {d!r}, which is not an experiment of {parent_ref!r} (has: {names})")
    for e in data.get("experiment", []):
        _need(isinstance(e, dict), where, "every [[experiment]] must be a table")
        if e.get("name") is not None and e.get("name") in names:
            i = names.index(e["name"])
            exps[i] = _merge_experiment(exps[i], e)
        else:
            exps.append(dict(e))
            names.append(e.get("name"))
    out["experiment"] = [e for e in exps if e.get("name") not in drop]
    return out


def load_matrix(src: str | Path | dict) -> Matrix:
    """Read a matrix (TOML path or dict), resolve ``extends`` and expand it into cells."""
    if isinstance(src, dict):
        data, where, base = src, "<dict>", Path.cwd()
    else:
        path = Path(src)
        where = str(path)
        data = _read_toml(path, where)
        base = path.resolve().parent
    if "extends" in data and "name" not in data and where != "<dict>":
        data = {**data, "name": Path(where).stem}
    data = resolve_extends(data, where, base, (str(Path(where).resolve()),) if where != "<dict>" else ())
    return expand(data, where)


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise MatrixError(f"{where}: {msg}")


def _int_list(v: Any, where: str, key: str) -> list[int]:
    _need(isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v),
          where, f"{key!r} must be a non-empty list of integers >= 0, got {v!r}")
    return v


def expand(data: dict[str, Any], where: str = "<dict>") -> Matrix:
    unknown = set(data) - TOP_KEYS
    _need(not unknown, where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    name = data.get("name", Path(where).stem if where != "<dict>" else "matrix")
    _need(isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum(), where,
          f"'name' must be letters, digits, '-' or '_', got {name!r}")
    seeds = _int_list(data.get("seeds", [0]), where, "seeds")
    devices = data.get("devices", ["cpu"])
    _need(isinstance(devices, list) and all(d in ("cpu", "cuda") for d in devices), where,
          f"'devices' must be a list of 'cpu'/'cuda', got {devices!r}")
    exps = data.get("experiment", [])
    _need(isinstance(exps, list) and exps, where, "needs at least one [[experiment]] table")
    cells: list[Cell] = []
    for i, exp in enumerate(exps):
        ew = f"{where}: experiment {i + 1}" + (f" ({exp.get('name')})" if isinstance(exp, dict) and exp.get("name") else "")
        _need(isinstance(exp, dict), where, f"experiment {i + 1} must be a table")
        unknown = set(exp) - EXP_KEYS
        _need(not unknown, ew, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(EXP_KEYS)}")
        _need(isinstance(exp.get("problem"), str), ew, "'problem' (a name) is required")
        ests = exp.get("estimators", [exp["estimator"]] if "estimator" in exp else None)
        _need(isinstance(ests, list) and ests and all(isinstance(e, str) for e in ests), ew,
              "'estimator' (a name) or 'estimators' (a list of names) is required")
        _need(isinstance(exp.get("metric"), str), ew, "'metric' (a name) is required")
        for key in ("problem_params", "estimator_params", "metric_params", "per_estimator"):
            _need(isinstance(exp.get(key, {}), dict), ew, f"{key!r} must be a table")
        groups = exp.get("zip", [])
        if isinstance(groups, list) and groups and all(isinstance(g, str) for g in groups):
            groups = [groups]
        _need(isinstance(groups, list) and all(isinstance(g, list) and len(g) >= 2 and all(isinstance(k, str) for k in g)
                                               for g in groups), ew,
              f"'zip' must be a list of parameter names or a list of such lists (each >= 2 names), got {exp.get('zip')!r}")
        est_keys = set(exp.get("estimator_params", {})) | {k for t in exp.get("per_estimator", {}).values()
                                                            if isinstance(t, dict) for k in t}
        prob_keys = set(exp.get("problem_params", {}))
        for g in groups:
            for k in g:
                _need(k in prob_keys or k in est_keys, ew,
                      f"'zip' names {k!r}, which is in neither problem_params nor the estimator parameters")
            _need(all(k in prob_keys for k in g) or all(k in est_keys and k not in prob_keys for k in g), ew,
                  f"'zip' group {g} mixes problem_params and estimator parameters; a group lives in one table")
        per = exp.get("per_estimator", {})
        for en in per:
            _need(en in ests, ew, f"per_estimator names {en!r}, which is not among the experiment's estimators {ests}")
        shared = exp.get("estimator_params", {})
        specs = {}
        for en in ests:
            try:
                specs[en] = ESTIMATORS.get(en).params
            except BlobenchError as exc:
                raise MatrixError(f"{ew}: {exc}") from None
        for k in shared:
            _need(any(k in specs[en] for en in ests), ew,
                  f"estimator_params names {k!r}, which none of {ests} accepts")
        e_seeds = _int_list(exp.get("seeds", seeds), ew, "seeds")
        e_devices = exp.get("devices", devices)
        _need(isinstance(e_devices, list) and e_devices and all(d in ("cpu", "cuda") for d in e_devices), ew,
              f"'devices' must be a non-empty list of 'cpu'/'cuda', got {e_devices!r}")
        for pp in _sweep(exp.get("problem_params", {}), groups, ew):
            for en in ests:
                merged = {**{k: v for k, v in shared.items() if k in specs[en]}, **per.get(en, {})}
                for ep in _sweep(merged, groups, ew):
                    for seed in e_seeds:
                        for dev in e_devices:
                            cells.append(Cell(exp["problem"], pp, en, ep, exp["metric"], dict(exp.get("metric_params", {})),
                                              seed, dev, exp.get("name", f"experiment-{i + 1}")))
    _need(bool(cells), where, "the matrix expands to 0 cells")
    return Matrix(name, cells, data, where)


def validate_cells(matrix: Matrix) -> None:
    """Check every cell's names and parameters before anything runs: problem parameters against the
    problem's declared specs (the problem itself is built inside its cell, under the cell's timeout and
    fault isolation: a huge ``dim`` must not abort the run before any cell), estimators built (cheap),
    metric names and parameters."""
    from blobench.core import api
    from blobench.core.params import validate
    from blobench.core.registry import METRICS, PROBLEMS

    seen: set[str] = set()
    for c in matrix.cells:
        sig = json.dumps([c.problem, c.problem_params, c.estimator, c.estimator_params, c.metric, c.metric_params],
                         sort_keys=True, default=str)
        if sig in seen:
            continue
        seen.add(sig)
        try:
            validate(f"problem {c.problem!r}", getattr(PROBLEMS.get(c.problem), "params", {}), c.problem_params)
            api.estimator(c.estimator, **c.estimator_params)
            fn = METRICS.get(c.metric)
            validate(f"metric {c.metric!r}", getattr(fn, "params", {}), c.metric_params)
            _check_data_files(c)
        except BlobenchError as exc:
            raise MatrixError(f"{matrix.path}: experiment {c.experiment!r}: {exc}") from None


def _check_data_files(c: Cell) -> None:
    """The data files a cell's problem reads (``data_files``) exist, before anything runs: a missing one is the
    loader's one-line error (which file, where to put it, where to get it) and the run stops with exit 2 instead
    of failing every one of its cells."""
    from blobench.core.data import DataError, data_dir, data_path, source_hint
    from blobench.core.params import validate
    from blobench.core.registry import PROBLEMS

    cls = PROBLEMS.get(c.problem)
    files = getattr(cls, "data_files", None)
    if files is None:
        return
    for p in files(validate(f"problem {c.problem!r}", getattr(cls, "params", {}), c.problem_params)):
        p = Path(p)
        if p.is_file():
            continue
        if p.parent == data_dir():
            data_path(p.name)  # raises the loader's message
        raise DataError(f"data file {str(p)!r} not found; it is available from {source_hint(p.name)}")


def _file_digest(path: str | None, cache: dict[str, str]) -> str:
    """The first 16 hex digits of a source file's sha256 (the cell key's part); the full digest stays in
    ``cache[path]`` for :func:`cell_inputs`."""
    if not path:
        return "-"
    if path not in cache:
        try:
            cache[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            cache[path] = "-"
    return cache[path][:16]


def plugin_sources(path: str | None) -> list[str]:
    """A plugin file and, recursively, the sibling plugin modules it imports (``from blobench.problems.sinusoid import
    ...`` in blobench/problems/digits_fewshot.py): the files whose edits change what its cells compute. Only absolute
    imports of modules of the plugin's own package directory are followed (not ``harness``, not third-party
    packages, as before: editing the harness does not invalidate finished cells)."""
    import ast

    if not path:
        return []
    out: list[str] = []
    todo = [Path(path)]
    while todo:
        f = todo.pop()
        if str(f) in out or not f.is_file():
            continue
        out.append(str(f))
        pkg_dir = f.parent
        try:
            tree = ast.parse(f.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for mod in names:
                parts = mod.split(".")
                if parts[:1] == [pkg_dir.parent.name] and parts[1:2] == [pkg_dir.name]:  # blobench.problems.x
                    parts = parts[1:]
                if len(parts) > 1 and parts[0] == pkg_dir.name:
                    cand = pkg_dir.joinpath(*parts[1:]).with_suffix(".py")
                    if cand.is_file():
                        todo.append(cand)
    return out


def cell_key(cell: Cell, cache: dict[str, str] | None = None) -> str:
    """The cache key of a cell: its identity (problem, estimator, parameters, metric, seed, device)
    plus the sha256 of the source files of its problem, estimator and metric plugins and of the sibling
    plugin modules they import, so editing one estimator's file changes the keys of its cells only."""
    from blobench.core.registry import plugin_file

    cache = {} if cache is None else cache

    def sources(path: str | None) -> list[str]:  # parsed once per run: the cache is shared by all cells
        k = f"sources:{path}"
        if k not in cache:
            cache[k] = "\n".join(plugin_sources(path))
        return cache[k].split("\n") if cache[k] else []

    salt = "|".join(",".join(_file_digest(f, cache) for f in sources(plugin_file(kind, name))) or "-"
                    for kind, name in (("problem", cell.problem), ("estimator", cell.estimator), ("metric", cell.metric)))
    return cell.key(salt + _data_salt(cell, cache))


def cell_inputs(cell: Cell, cache: dict[str, str]) -> dict[str, dict[str, str]]:
    """{"sources": {absolute path: sha256}, "data": {absolute path: sha256}}: the plugin source files and the data
    files the key of ``cell`` was made from, after :func:`cell_key` filled ``cache``. Shipped with the cell, so the
    worker can check that what it executed and read is what the key names (blobench.engine.runner.check_inputs)."""
    from blobench.core.registry import plugin_file

    src_out: dict[str, str] = {}
    for kind, name in (("problem", cell.problem), ("estimator", cell.estimator), ("metric", cell.metric)):
        src = cache.get(f"sources:{plugin_file(kind, name)}", "")
        for f in src.split("\n") if src else []:
            if cache.get(f, "-") != "-":
                src_out[os.path.abspath(f)] = cache[f]
    data_out: dict[str, str] = {}
    for k in filter(None, cache.get(f"datafor:{cell.problem}:{_pkey(cell)}", "").split("\n")):
        if cache.get(k, "-") != "-":
            data_out[k[len("data:"):]] = cache[k]
    return {"sources": src_out, "data": data_out}


def _pkey(cell: Cell) -> str:
    return json.dumps(cell.problem_params, sort_keys=True, default=str)


def _data_salt(cell: Cell, cache: dict[str, str]) -> str:
    """'|data:<sha256>,...' of the data files the cell's problem reads (a problem class may define
    ``data_files(params) -> list[path]``: blobench/problems/libsvm_logreg.py, blobench/core/data.py), so a changed data
    file recomputes its cells; '' for every problem without data files, whose keys are as before. A file
    that is missing digests as '-' (the cell then fails with the one-line missing-file error)."""
    from blobench.core.params import validate
    from blobench.core.registry import PROBLEMS

    try:
        cls = PROBLEMS.get(cell.problem)
        files = getattr(cls, "data_files", None)
        if files is None:
            return ""
        paths = files(validate(f"problem {cell.problem!r}", getattr(cls, "params", {}), cell.problem_params))
    except BlobenchError:  # unknown problem or bad parameters: reported by validate_cells / the cell itself
        return ""
    from blobench.core.data import file_digest

    def digest(path: Path) -> str:
        k = f"data:{Path(path).resolve()}"
        if k not in cache:
            cache[k] = file_digest(path)
        return cache[k]

    cache[f"datafor:{cell.problem}:{_pkey(cell)}"] = "\n".join(f"data:{Path(p).resolve()}" for p in paths)
    return "|data:" + ",".join(digest(Path(p)) for p in paths)
