"""Matrix files: cartesian and zipped sweeps, extends/overrides, validation errors that name file and key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from blobench.engine.matrix import Matrix, MatrixError, cell_key, load_matrix, validate_cells

ROOT = Path(__file__).resolve().parent.parent


def exp(**kw):
    base = {"name": "e", "problem": "quadratic", "problem_params": {"dim": 3}, "estimators": ["itd", "aid-cg"],
            "metric": "error_vs_budget", "metric_params": {"budget": "inner_steps", "values": [1, 2]}}
    return {"name": "m", "experiment": [{**base, **kw}]}


def test_cartesian_versus_zipped_sweep():
    cart = load_matrix(exp(estimators=["aid-cg"], estimator_params={"inner_steps": [5, 10, 20], "solver_steps": [1, 2, 3]},
                           metric_params={"budget": "inner_steps", "values": [1]}))
    assert len(cart.cells) == 9
    zipped = load_matrix(exp(estimators=["aid-cg"], estimator_params={"inner_steps": [5, 10, 20], "solver_steps": [1, 2, 3]},
                             zip=["inner_steps", "solver_steps"]))
    assert [(c.estimator_params["inner_steps"], c.estimator_params["solver_steps"]) for c in zipped.cells] == \
        [(5, 1), (10, 2), (20, 3)]
    # an estimator that lacks one name of the group (itd has no solver_steps) sweeps the rest
    mixed = load_matrix(exp(estimator_params={"inner_steps": [5, 10]}, per_estimator={"aid-cg": {"solver_steps": [1, 2]}},
                            zip=[["inner_steps", "solver_steps"]], problem_params={"dim": 3, "kappa": [10, 100]}))
    assert sum(c.estimator == "itd" for c in mixed.cells) == 4 and sum(c.estimator == "aid-cg" for c in mixed.cells) == 4


def test_seeds_and_devices_multiply_cells_and_keys_are_distinct():
    m = load_matrix({**exp(), "seeds": [0, 1, 2], "devices": ["cpu", "cuda"]})
    assert len(m.cells) == 2 * 3 * 2
    assert len({cell_key(c) for c in m.cells}) == 12


@pytest.mark.parametrize("patch, words", [
    ({"zip": ["inner_steps"]}, ["'zip'", "list of parameter names"]),
    ({"zip": ["inner_steps", "nope"], "estimator_params": {"inner_steps": [1, 2]}}, ["'zip'", "'nope'"]),
    ({"zip": ["inner_steps", "solver_steps"], "estimators": ["aid-cg"],
      "estimator_params": {"inner_steps": [1, 2], "solver_steps": [1, 2, 3]}}, ["equal length", "inner_steps: 2"]),
    ({"zip": ["dim", "inner_steps"], "problem_params": {"dim": [3, 4]}, "estimator_params": {"inner_steps": [1, 2]}},
     ["mixes problem_params"]),
    ({"estimatorz": ["itd"]}, ["unknown key(s) ['estimatorz']", "allowed"]),
    ({"estimators": ["itdd"]}, ["unknown estimator 'itdd'", "did you mean"]),
    ({"devices": ["tpu"]}, ["'devices'", "'cpu'/'cuda'"]),
    ({"estimator_params": {"solver_stepz": 3}}, ["estimator_params names 'solver_stepz'"]),
])
def test_validation_errors_name_file_key_and_allowed(tmp_path, patch, words):
    import json

    # written as TOML through a dict: the message must carry the file name
    path = tmp_path / "bad.toml"
    body = exp(**patch)
    lines = ['name = "bad"']
    for e in body["experiment"]:
        lines.append("[[experiment]]")
        for k, v in e.items():
            lines.append(f"{k} = {_toml(v)}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MatrixError) as err:
        load_matrix(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg, json.dumps(patch))


def _toml(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(x)}' for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def test_bad_parameter_values_fail_before_anything_runs(tmp_path):
    m = load_matrix(exp(estimator_params={"inner_steps": -3}))
    with pytest.raises(MatrixError, match="inner_steps"):
        validate_cells(m)


def test_extends_overrides_appends_and_drops(tmp_path):
    (tmp_path / "base.toml").write_text(textwrap.dedent('''
        name = "base"
        seeds = [0]
        [[experiment]]
        name = "budget"
        problem = "quadratic"
        problem_params = { dim = 3, kappa = 10 }
        estimators = ["itd", "aid-cg"]
        estimator_params = { solver_steps = 5 }
        metric = "error_vs_budget"
        metric_params = { budget = "inner_steps", values = [1, 2] }
        [[experiment]]
        name = "bv"
        problem = "quadratic"
        problem_params = { dim = 3, noise = 0.3 }
        estimator = "itd"
        metric = "bias_variance"
    '''))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.toml").write_text(textwrap.dedent('''
        extends = "../base.toml"
        seeds = [0, 1]
        drop = ["bv"]
        [[experiment]]
        name = "budget"
        problem_params = { kappa = [10, 100] }
        estimators = ["aid-cg"]
        [[experiment]]
        name = "extra"
        problem = "quadratic"
        estimator = "fo"
        metric = "error_vs_budget"
    '''))
    m = load_matrix(tmp_path / "sub" / "child.toml")
    assert m.name == "child"
    budget = [c for c in m.cells if c.experiment == "budget"]
    # kappa overridden (merged with dim=3), estimators replaced, seeds from the child
    assert {(c.problem_params["dim"], c.problem_params["kappa"], c.seed) for c in budget} == \
        {(3, 10, 0), (3, 10, 1), (3, 100, 0), (3, 100, 1)}
    assert {c.estimator for c in budget} == {"aid-cg"} and {c.estimator_params["solver_steps"] for c in budget} == {5}
    assert not [c for c in m.cells if c.experiment == "bv"]
    assert {c.estimator for c in m.cells if c.experiment == "extra"} == {"fo"}
    # errors: a missing parent, a drop of an unknown experiment, a cycle
    (tmp_path / "c2.toml").write_text('extends = "nope.toml"\n')
    with pytest.raises(MatrixError, match="nope.toml.*does not exist"):
        load_matrix(tmp_path / "c2.toml")
    (tmp_path / "c3.toml").write_text('extends = "base.toml"\ndrop = ["zzz"]\n')
    with pytest.raises(MatrixError, match="'drop' names 'zzz'.*has: \\['budget', 'bv'\\]"):
        load_matrix(tmp_path / "c3.toml")
    (tmp_path / "c4.toml").write_text('extends = "c5.toml"\n')
    (tmp_path / "c5.toml").write_text('extends = "c4.toml"\n')
    with pytest.raises(MatrixError, match="cycle"):
        load_matrix(tmp_path / "c4.toml")


@pytest.mark.parametrize("name", ["smoke", "default", "full", "gpu"])
def test_shipped_matrices_validate(name):
    path = ROOT / "matrices" / f"{name}.toml"
    if not path.is_file():
        pytest.skip(f"{path.name} not present")
    m = load_matrix(path)
    assert m.cells
    # build one cell per (experiment, estimator, problem parameters): the full matrix has thousands
    seen, sample = set(), []
    for c in m.cells:
        sig = (c.experiment, c.estimator, str(sorted(c.problem_params.items())))
        if sig not in seen:
            seen.add(sig)
            sample.append(c)
    validate_cells(Matrix(m.name, sample, m.source, m.path))
