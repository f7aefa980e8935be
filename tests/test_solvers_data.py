"""Issue 15, real data: libsvm files read from $BLOBENCH_DATA (small files generated here, never downloaded)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.cli import main
from blobench.core.data import DataError, load_libsvm


@pytest.fixture
def datadir(tmp_path, monkeypatch):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 5)) * (rng.random((80, 5)) < 0.7)  # sparse-ish, as libsvm files are
    y = np.where(X @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 0.3 * rng.standard_normal(80) > 0, 1, 0)  # labels 0/1
    dump_svmlight_file(X, y, str(tmp_path / "tiny"))
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    return tmp_path, X, y


def test_load_libsvm_reads_the_file(datadir):
    _, X, y = datadir
    Xr, yr = load_libsvm("tiny")
    assert np.allclose(Xr, X) and np.array_equal(yr, y)


def test_missing_file_is_one_line_exit_2(datadir, capsys):
    with pytest.raises(DataError, match="'ijcnn1' not found: put it in"):
        load_libsvm("ijcnn1")
    code = main(["estimate", "libsvm-logreg", "exact", "-n", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("blobench: error: data file 'ijcnn1' not found")
    assert "libsvmtools" in err and str(datadir[0]) in err


def test_libsvm_logreg_truth_matches_finite_differences(datadir):
    p = harness.problem("libsvm-logreg", dataset="tiny", n_train=50, n_val=30)
    x = p.x0() + 0.2 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = p.hypergradient(x)
    h = 1e-5
    fd = torch.stack([torch.tensor((p.value(x + h * e) - p.value(x - h * e)) / (2 * h)) for e in torch.eye(p.dim_x, dtype=torch.float64)])
    assert torch.allclose(g, fd, atol=1e-8, rtol=1e-6)
    # closed-form Hessian = autograd Hessian of g
    y = p.inner_solution(x)
    H = torch.autograd.functional.hessian(lambda y_: p.inner(x, y_), y)
    assert torch.allclose(p.inner_hessian(x, y), H, atol=1e-12)


def test_libsvm_logreg_finite_sum_and_soba_fixed_point(datadir):
    from blobench.core.oracles import Oracles

    p = harness.problem("libsvm-logreg", dataset="tiny", n_train=50, n_val=30, stochastic=True)
    assert p.finite_sum == (50, 30)
    full = harness.problem("libsvm-logreg", dataset="tiny", n_train=50, n_val=30)
    x, y = p.x0(), torch.randn(p.dim_y, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    o = Oracles(p)
    gi = sum(o.grad_y_g(x, y, p.batch_at(torch.tensor([i]), torch.tensor([0]))) for i in range(50)) / 50
    assert torch.allclose(gi, Oracles(full).grad_y_g(x, y), atol=1e-12)
    e = harness.estimator("soba")
    st = None
    for _ in range(300):
        est = e.estimate(Oracles(full), x, {}, st)
        st = est.state
    assert torch.allclose(est.grad, full.hypergradient(x), atol=1e-8)


def test_libsvm_logreg_cell_key_follows_the_file(datadir):
    from sklearn.datasets import dump_svmlight_file

    from blobench.engine.matrix import cell_key, load_matrix

    spec = {"name": "k", "seeds": [0], "devices": ["cpu"], "experiment": [{
        "name": "e", "problem": "libsvm-logreg", "problem_params": {"dataset": "tiny", "n_train": 50, "n_val": 30},
        "estimator": "exact", "metric": "bias_variance", "metric_params": {"samples": 2}}]}
    k0 = cell_key(load_matrix(spec).cells[0])
    assert cell_key(load_matrix(spec).cells[0]) == k0
    _, X, y = datadir
    dump_svmlight_file(X[::-1], y[::-1], str(datadir[0] / "tiny"))  # same rows, another order: other numbers
    assert cell_key(load_matrix(spec).cells[0]) != k0
