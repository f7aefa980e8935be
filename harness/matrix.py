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

Every cell is validated before anything runs; errors name the file, the key and what
is allowed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BlobenchError
from .registry import ESTIMATORS

TOP_KEYS = {"name", "description", "seeds", "devices", "experiment"}
EXP_KEYS = {"name", "problem", "problem_params", "estimator", "estimators", "estimator_params", "per_estimator",
            "metric", "metric_params", "seeds", "devices"}


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


def _sweep(params: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(params)
    lists = [v if isinstance(v, list) else [v] for v in params.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]


def load_matrix(src: str | Path | dict) -> Matrix:
    if isinstance(src, dict):
        data, where = src, "<dict>"
    else:
        path = Path(src)
        where = str(path)
        if not path.is_file():
            raise MatrixError(f"matrix file {where!r} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise MatrixError(f"{where}: not valid TOML: {exc}") from exc
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
        for pp in _sweep(exp.get("problem_params", {})):
            for en in ests:
                merged = {**{k: v for k, v in shared.items() if k in specs[en]}, **per.get(en, {})}
                for ep in _sweep(merged):
                    for seed in e_seeds:
                        for dev in e_devices:
                            cells.append(Cell(exp["problem"], pp, en, ep, exp["metric"], dict(exp.get("metric_params", {})),
                                              seed, dev, exp.get("name", f"experiment-{i + 1}")))
    return Matrix(name, cells, data, where)


def validate_cells(matrix: Matrix) -> None:
    """Build every problem and estimator and check metric names/params, before anything runs."""
    from . import api
    from .params import validate
    from .registry import METRICS

    seen: set[str] = set()
    for c in matrix.cells:
        sig = json.dumps([c.problem, c.problem_params, c.estimator, c.estimator_params, c.metric, c.metric_params],
                         sort_keys=True, default=str)
        if sig in seen:
            continue
        seen.add(sig)
        try:
            api.problem(c.problem, **c.problem_params)
            api.estimator(c.estimator, **c.estimator_params)
            fn = METRICS.get(c.metric)
            validate(f"metric {c.metric!r}", getattr(fn, "params", {}), c.metric_params)
        except BlobenchError as exc:
            raise MatrixError(f"{matrix.path}: experiment {c.experiment!r}: {exc}") from None
