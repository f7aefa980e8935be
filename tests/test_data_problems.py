"""Issue 15, real data sets: libsvm-multilogreg and mnist-cleaning on files generated here (and sklearn's shipped
digits), ``--data-dir``, and the data file's sha256 in the cell key. Nothing is downloaded."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import blobench.core.errors
from blobench import harness
from blobench.cli import main
from blobench.core.data import DataError, load_npz
from blobench.engine.matrix import cell_key, load_matrix


def _multiclass_file(path, n=90, p=6, C=3, seed=0):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * (rng.random((n, p)) < 0.7)
    W = rng.standard_normal((p, C))
    y = np.argmax(X @ W + 0.5 * rng.standard_normal((n, C)), 1) + 1  # labels 1..C, as covtype's 1..7
    dump_svmlight_file(X, y, str(path))
    return X, y


def _digits_npz(path, square=True):
    from sklearn.datasets import load_digits

    d = load_digits()  # 8x8 images shipped with scikit-learn: an MNIST-style file without a download
    X = d.images if square else d.data
    np.savez(path, X=X, y=d.target)
    return d


@pytest.fixture
def datadir(tmp_path, monkeypatch):
    _multiclass_file(tmp_path / "tiny3")
    _digits_npz(tmp_path / "digits.npz")
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    return tmp_path


def _fd_check(p, x, h=1e-5, atol=1e-8, rtol=1e-6):
    g = p.hypergradient(x)
    fd = torch.stack([torch.tensor((p.value(x + h * e) - p.value(x - h * e)) / (2 * h))
                      for e in torch.eye(p.dim_x, dtype=torch.float64)])
    assert torch.allclose(g, fd, atol=atol, rtol=rtol), (g, fd)


@pytest.mark.parametrize("reg_per", ["class", "feature"])
def test_multilogreg_truth_matches_finite_differences_and_autograd_hessian(datadir, reg_per):
    p = harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=50, n_val=30, reg_per=reg_per)
    assert (p.n_cls, p.p_feat, p.dim_y) == (3, 6, 18) and p.dim_x == (3 if reg_per == "class" else 6)
    x = p.x0() + 0.3 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _fd_check(p, x)
    y = p.inner_solution(x)
    assert float(torch.linalg.norm(torch.func.grad(p.inner, argnums=1)(x, y, None))) < 1e-12
    H = torch.autograd.functional.hessian(lambda y_: p.inner(x, y_), y)
    assert torch.allclose(p.inner_hessian(x, y), H, atol=1e-12)


def test_multilogreg_per_class_penalty_is_per_class(datadir):
    """reg_per='class': exp(x_c) weighs column c of W (raising x_0 shrinks class 0's weights only)."""
    p = harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=50, n_val=30)
    W = torch.randn(p.p_feat, p.n_cls, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.isclose(p.ridge(x, W), 0.5 * sum(np.exp(float(x[c])) * (W[:, c] ** 2).sum() for c in range(3)))


def test_multilogreg_stationary_point_is_stationary_and_max_features(datadir):
    p = harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=50, n_val=30, outer_reg=1e-2)
    (xs,) = p.stationary_points()
    assert float(torch.linalg.norm(p.hypergradient(xs))) < 1e-8
    for e in torch.eye(p.dim_x, dtype=torch.float64):  # a minimum along each axis, not only a zero gradient
        assert p.value(xs + 1e-3 * e) >= p.value(xs) - 1e-12 and p.value(xs - 1e-3 * e) >= p.value(xs) - 1e-12
    q = harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=50, n_val=30, max_features=4,
                        reg_per="feature")
    assert q.p_feat == q.dim_x == 4


def test_multilogreg_finite_sum_matches_full_gradient(datadir):
    from blobench.core.oracles import Oracles

    p = harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=50, n_val=30, stochastic=True)
    full = harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=50, n_val=30)
    assert p.finite_sum == (50, 30)
    x, y = p.x0(), torch.randn(p.dim_y, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    o = Oracles(p)
    gi = sum(o.grad_y_g(x, y, p.batch_at(torch.tensor([i]), torch.tensor([0]))) for i in range(50)) / 50
    assert torch.allclose(gi, Oracles(full).grad_y_g(x, y), atol=1e-12)


def test_multilogreg_bad_sizes_are_one_line(datadir):
    with pytest.raises(blobench.core.errors.ParameterError, match="exceeds the 90 rows of 'tiny3'"):
        harness.problem("libsvm-multilogreg", dataset="tiny3", n_train=80, n_val=30)


def test_npz_loader_and_format_errors(datadir):
    X, y = load_npz("digits.npz")
    assert X.shape == (1797, 64) and y.dtype == np.int64  # [n, 8, 8] images flattened
    np.savez(datadir / "bad.npz", X=np.zeros((3, 2)))
    with pytest.raises(DataError, match="lacks array"):
        load_npz("bad.npz")
    (datadir / "junk.npz").write_text("not an archive")
    with pytest.raises(DataError, match="not a numpy .npz archive"):
        load_npz("junk.npz")


def test_mnist_cleaning_equals_hyper_cleaning_on_the_same_digits(datadir):
    """The file path reuses hyper-cleaning's split, standardisation and corruption: on sklearn's digits written
    to an .npz, downsample=1, it is the same problem as hyper-cleaning(data='digits'), bit for bit."""
    kw = dict(n_train=30, n_val=40, classes=3, corruption=0.3, reg=0.1, seed=1)
    m = harness.problem("mnist-cleaning", file="digits.npz", downsample=1, **kw)
    h = harness.problem("hyper-cleaning", data="digits", **kw)
    for a in ("Xtr", "Ttr", "Xval", "Tval"):
        assert torch.equal(getattr(m, a), getattr(h, a)), a
    x = m.x0() + 0.1
    assert m.value(x) == h.value(x)


def test_mnist_cleaning_truth_and_downsampling(datadir):
    p = harness.problem("mnist-cleaning", file="digits.npz", n_train=12, n_val=30, classes=3, downsample=2)
    assert p.p_feat == 16 and p.dim_x == 12 and p.corrupted.any()  # 8x8 -> 4x4
    x = torch.randn(p.dim_x, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _fd_check(p, x)
    with pytest.raises(blobench.core.errors.ParameterError, match="downsample=3 needs square images"):
        harness.problem("mnist-cleaning", file="digits.npz", n_train=12, n_val=30, classes=3, downsample=3)


def test_missing_files_are_one_line_exit_2_through_the_cli(datadir, capsys):
    for prob, name in (("libsvm-multilogreg", "covtype"), ("mnist-cleaning", "mnist.npz")):
        code = main(["estimate", prob, "exact", "-n", "1"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0, err
        assert err.startswith(f"blobench: error: data file '{name}' not found: put it in {datadir}")
    code = main(["estimate", "libsvm-multilogreg", "exact", "-n", "1", "-P", "dataset=news20"])
    assert code == 2 and "news20.scale" in capsys.readouterr().err


def test_run_with_a_missing_data_file_stops_up_front_with_exit_2(datadir, tmp_path, monkeypatch, capsys):
    """`run` checks every cell's data files before any cell starts: one line naming the file, exit 2, nothing
    written (before, each cell failed on its own and the run ended with exit 3)."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "m.toml"
    spec.write_text('name = "m"\n[[experiment]]\nname = "e"\nproblem = "libsvm-multilogreg"\n'
                    'problem_params = { dataset = "covtype", n_train = 40, n_val = 20 }\nestimators = ["exact"]\n'
                    'metric = "bias_variance"\nmetric_params = { samples = 2 }\n')
    code = main(["run", str(spec), "--run-id", "r"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "data file 'covtype' not found: put it in" in err and "covtype.scale" in err
    assert not (tmp_path / "runs" / "r").exists() or not any((tmp_path / "runs" / "r").rglob("*.parquet"))


def test_data_dir_overrides_the_environment(datadir, tmp_path_factory, capsys, monkeypatch):
    other = tmp_path_factory.mktemp("elsewhere")
    _multiclass_file(other / "only-here", seed=5)
    args = ["estimate", "libsvm-multilogreg", "exact", "-n", "2", "-P", "dataset=only-here", "-P", "n_train=40",
            "-P", "n_val=20", "--json"]
    assert main(args) == 2 and "'only-here' not found" in capsys.readouterr().err  # $BLOBENCH_DATA lacks it
    monkeypatch.setenv("BLOBENCH_DATA", str(datadir))  # restored after the test (main exports --data-dir)
    assert main(args + ["--data-dir", str(other)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bias_norm"] < 1e-10
    for bad in (str(other / "nope"), str(other / "only-here")):  # missing folder; a file, not a folder
        assert main(args + ["--data-dir", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"blobench: error: --data-dir {bad!r}")


def _matrix(problem_params: dict, problem: str = "libsvm-multilogreg") -> dict:
    return {"name": "data-key", "seeds": [0], "devices": ["cpu"], "experiment": [{
        "name": "e", "problem": problem, "problem_params": problem_params, "estimator": "exact",
        "metric": "bias_variance", "metric_params": {"samples": 2}}]}


def test_cell_key_follows_the_data_file_content(datadir, monkeypatch):
    pp = {"dataset": "tiny3", "n_train": 40, "n_val": 20}
    key = lambda m: cell_key(load_matrix(m).cells[0])  # noqa: E731
    k0 = key(_matrix(pp))
    assert key(_matrix(pp)) == k0  # same file, same key
    (datadir / "tiny3").touch()  # a new mtime, the same bytes: the same key
    assert key(_matrix(pp)) == k0
    copy = datadir / "copy"
    copy.mkdir()
    (copy / "tiny3").write_bytes((datadir / "tiny3").read_bytes())
    monkeypatch.setenv("BLOBENCH_DATA", str(copy))  # another folder, the same content: the same key
    assert key(_matrix(pp)) == k0
    _multiclass_file(copy / "tiny3", seed=9)  # changed content: a new key
    k1 = key(_matrix(pp))
    assert k1 != k0
    npz = _matrix({"file": "digits.npz", "n_train": 12, "n_val": 30, "classes": 3}, "mnist-cleaning")
    monkeypatch.setenv("BLOBENCH_DATA", str(datadir))
    k2 = key(npz)
    d = np.load(datadir / "digits.npz")
    np.savez(datadir / "digits.npz", X=d["X"][::-1], y=d["y"][::-1])
    assert key(npz) != k2


def test_cell_keys_of_problems_without_data_files_are_unchanged():
    """No data_files -> no data salt: the key is exactly the pre-issue-15 formula (identity + source digests)."""
    from blobench.engine.matrix import _data_salt, _file_digest, plugin_sources
    from blobench.core.registry import plugin_file

    m = load_matrix(_matrix({"dim": 3}, "quadratic"))
    c = m.cells[0]
    cache: dict[str, str] = {}
    salt = "|".join(",".join(_file_digest(f, cache) for f in plugin_sources(plugin_file(kind, name))) or "-"
                    for kind, name in (("problem", c.problem), ("estimator", c.estimator), ("metric", c.metric)))
    assert _data_salt(c, {}) == "" and cell_key(c) == c.key(salt)


def test_run_recomputes_only_when_the_data_file_changes(datadir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _matrix({"dataset": "tiny3", "n_train": 40, "n_val": 20})
    first = harness.run(spec, runs_dir="runs", run_id="r", progress=False)
    keys = set(harness.load(first)["key"])
    harness.run(spec, runs_dir="runs", run_id="r", progress=False)
    assert set(harness.load(first)["key"]) == keys  # nothing recomputed
    _multiclass_file(datadir / "tiny3", seed=4)
    harness.run(spec, runs_dir="runs", run_id="r", progress=False)
    assert harness.load(first)["key"].nunique() == 1 and set(harness.load(first)["key"]) != keys
