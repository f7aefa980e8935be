"""benchmark_bilevel's data hyper-cleaning problem on MNIST / Fashion-MNIST, exactly, with exact float64 truth.

The "datacleaning" experiment of Dagreou, Ablin, Vaiter, Moreau, "A framework for bilevel optimization that
enables stochastic and global variance reduction algorithms" (NeurIPS 2022, Sec. 4.2), as the benchopt
benchmark runs it (github.com/benchopt/benchmark_bilevel, ``datasets/mnist.py`` and ``objective.py``, read at
commit 3ad65dc; this file is our own code following their construction):

- MNIST's 60000 training images are split with ``sklearn.model_selection.train_test_split(X, y,
  train_size=20000, test_size=5000, random_state=RandomState(32))``: n_train = 20000, n_val = 5000;
- from the same RandomState, each training label is corrupted with probability ``ratio`` (0.5 / 0.7 / 0.9)
  and a corrupted label is redrawn uniformly from the 10 classes (it may land on the true one);
- ``StandardScaler`` fitted on the training split transforms train, validation and the 10000 test images;
- inner g(lambda, W) = 1/n_tr sum_i sigmoid(lambda_i) CE(W^T a_i, t~_i) + reg ||W||^2, reg = 0.2
  (their ``self.reg * np.sum(inner_var**2)``: no 1/2, so mu = 2 reg = 0.4);
- outer f(lambda, W) = 1/n_val sum_j CE(W^T a'_j, t'_j) (clean labels; no outer penalty, ``outer_reg=0``);
- start lambda_0 = -2 (every sample weight sigmoid(-2)), W_0 = 0 (their ``objective.py``);
- metrics of an inner iterate W: the misclassification rates on train (corrupted labels), validation and test.
  Their ``accuracy`` function returns the error rate (``mean(argmax != y)``) under the names
  ``train_accuracy`` / ``value`` / ``test_accuracy``; here they are named for what they are:
  ``train_error``, ``val_error``, ``test_error``.

Differences: ours runs in float64 (their JAX arrays are float32 by default); their minibatches are
contiguous slices of a shuffled order, ours uniform indices (``stochastic=true``, the project's finite-sum
convention).

Ground truth (dim_x = 20000, dim_y = 7840: no dense Hessian). y*(lambda) by Newton-CG on the strongly convex
g (inexact Newton, CG forcing term min(1/2, ||grad||^1/2), Armijo backtracking) until
||grad_y g(lambda, W)||_F <= ``tol`` (default 1e-10, so ||W - W*|| <= tol / mu = 2.5e-10). The Hessian-vector
product is closed form, H[V] = X^T diag(s/n) (P o XV - P o rowsum(P o XV)) + 2 reg V. The hypergradient by the
implicit-function theorem (Ji, Yang, Liang 2021, eq. (2)): V solves H V = grad_W f by CG to residual <= ``tol``,
and grad Phi(lambda)_i = outer_reg lambda_i - sigmoid'(lambda_i)/n_tr <P_i - t~_i, V^T a_i>. Tests compare it
with the dense-Hessian truth of :class:`blobench.problems.logreg_l2.SoftmaxBilevel` and with central finite
differences of Phi on a small slice (tests/test_datacleaning.py). No stationary point is computed (Phi - Phi*
is NaN in convergence rows; ||grad Phi||^2 and the held-out errors are the measures).

Start-point cache. Everything the truth computes at the start point x0 = ``lambda0`` (y*(x0) by Newton-CG from
W = 0, V(x0) by CG from 0) and the power-iteration estimate of L is a function of the problem's parameters and
the data file alone; every cell of a matrix that shares them (ten solvers times the seeds in matrices/real.toml)
would recompute it. It is kept in ``<data folder>/.cache/datacleaning-<key>.npz`` (key: sha256 of the parameters,
``stochastic`` aside, and of the data file's bytes), written atomically by the first cell and read by the others.
The arrays are the computed ones, bit for bit, and later truths warm-start from them exactly as from a fresh
computation, so every number of a cell is the same with or without the cache (tests/test_datacleaning.py).
``BLOBENCH_TRUTH_CACHE=0`` turns it off; an unreadable or mismatched cache file is ignored and rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blobench import harness
from blobench.core.data import data_dir, file_digest, load_npz_split
from blobench.core.errors import ParameterError
from blobench.core.numerics import cg_tol
from blobench.core.params import Param
from blobench.problems.logreg_l2 import SoftmaxBilevel


def benchmark_bilevel_split(X: np.ndarray, y: np.ndarray, Xtest: np.ndarray, n_train: int, n_val: int,
                            ratio: float, random_state: int, n_classes: int = 10):
    """benchmark_bilevel's datasets/mnist.py split (see the module docstring), in float64:
    (Xtr, ytr corrupted, Xval, yval, Xtest scaled, corrupted mask)."""
    try:
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError:  # pragma: no cover - scikit-learn is the `digits` extra, installed by the Makefile
        raise ParameterError("problem 'datacleaning' needs scikit-learn (benchmark_bilevel's train_test_split and "
                             "StandardScaler): pip install scikit-learn") from None

    rng = np.random.RandomState(random_state)
    Xtr, Xval, ytr, yval = train_test_split(X, y, test_size=n_val, train_size=n_train, random_state=rng)
    ytr = np.array(ytr, copy=True)
    bad = rng.rand(n_train) < ratio
    ytr[bad] = rng.randint(0, n_classes, int(bad.sum()))
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), ytr, scaler.transform(Xval), yval, scaler.transform(Xtest), bad


@harness.register_problem("datacleaning")
class DataCleaning(SoftmaxBilevel):
    """benchmark_bilevel's datacleaning (Dagreou et al. NeurIPS 2022): weights sigmoid(lambda_i) on 20000 label-corrupted MNIST images, exact Newton-CG truth, test error."""

    params = {
        "dataset": Param("str", default="mnist", choices=("mnist", "fashion-mnist"),
                         doc="<dataset>.npz in the data folder (`blobench data fetch` writes it)"),
        "ratio": Param("float", default=0.5, low=0, high=1, doc="label corruption probability (0.5 / 0.7 / 0.9)"),
        "n_train": Param("int", default=20000, low=2, doc="training samples = dim_x"),
        "n_val": Param("int", default=5000, low=1, doc="validation samples (clean labels)"),
        "n_test": Param("int", default=0, low=0, doc="test images used for test_error (0: all 10000)"),
        "reg": Param("float", default=0.2, low=0, low_open=True, doc="inner penalty reg ||W||^2 (mu = 2 reg)"),
        "outer_reg": Param("float", default=0.0, low=0, doc="outer ridge on lambda (benchmark_bilevel: none)"),
        "lambda0": Param("float", default=-2.0, doc="x0: every lambda_i (benchmark_bilevel: -2)"),
        "seed": Param("int", default=32, low=0, doc="the split's random_state (benchmark_bilevel: 32)"),
        "tol": Param("float", default=1e-10, low=0, low_open=True,
                     doc="truth tolerance: ||grad_y g|| and the CG residual of H V = grad_y f"),
        "stochastic": Param("bool", default=False, doc="minibatches of the finite sum (n_train inner, n_val outer terms)"),
    }

    heldout = True

    @classmethod
    def data_files(cls, params: dict[str, Any]) -> list[Path]:
        """The data file a parameter set reads (its sha256 enters the cell key: blobench.engine.matrix.cell_key)."""
        return [data_dir() / f"{params['dataset']}.npz"]

    def setup(self) -> None:
        p = self.p
        X, y, Xt, yt = load_npz_split(f"{p['dataset']}.npz")
        if p["n_train"] + p["n_val"] > len(y):
            raise ParameterError(f"problem 'datacleaning': n_train + n_val = {p['n_train'] + p['n_val']} exceeds "
                                 f"the {len(y)} training images of {p['dataset']!r}")
        C = int(max(y.max(), yt.max())) + 1
        if p["n_test"]:
            Xt, yt = Xt[:p["n_test"]], yt[:p["n_test"]]
        Xtr, ytr, Xval, yval, Xt, self.corrupted = benchmark_bilevel_split(
            X, y, Xt, p["n_train"], p["n_val"], p["ratio"], p["seed"], C)
        eye = np.eye(C)
        self.Xtr, self.Ttr = torch.tensor(Xtr), torch.tensor(eye[ytr])
        self.Xval, self.Tval = torch.tensor(Xval), torch.tensor(eye[yval])
        self.Xtest, self.ytest = torch.tensor(Xt), torch.tensor(yt)
        self.dim_x = p["n_train"]
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        self._v_warm: torch.Tensor | None = None
        self._last_tol = float(self.p["tol"])
        self._start: dict[str, torch.Tensor] | None = None  # the start-point cache's arrays (module docstring)
        self._start_path = self._start_cache_path()
        if self._start_path is not None and self._start_path.is_file():
            self._start = self._read_start_cache(self._start_path)
        self._finish_setup()

    # -- the start-point cache (module docstring) ------------------------------------------------------------
    def _start_cache_path(self) -> Path | None:
        if os.environ.get("BLOBENCH_TRUTH_CACHE", "1") == "0":
            return None
        params = {k: v for k, v in sorted(self.p.items()) if k != "stochastic"}
        digest = file_digest(data_dir() / f"{self.p['dataset']}.npz")
        key = hashlib.sha256(json.dumps([params, digest], sort_keys=True, default=str).encode()).hexdigest()
        return data_dir() / ".cache" / f"datacleaning-{key[:24]}.npz"

    def _read_start_cache(self, path: Path) -> dict[str, torch.Tensor] | None:
        try:
            with np.load(str(path), allow_pickle=False) as z:
                arrays = {k: torch.from_numpy(np.array(z[k])) for k in ("L_top", "y0", "v0")}
        except (OSError, ValueError, KeyError):
            return None
        if arrays["y0"].shape != (self.Xtr.shape[1] * self.Ttr.shape[1],) or arrays["v0"].shape != arrays["y0"].shape:
            return None
        return arrays

    def _write_start_cache(self, y0: torch.Tensor, v0: torch.Tensor) -> None:
        path = self._start_path
        if path is None or self._start is not None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.npz")
            np.savez(str(tmp), L_top=np.array(self._top), y0=y0.numpy(), v0=v0.numpy())
            tmp.replace(path)
        except OSError:  # a read-only data folder: no cache, same numbers
            pass

    def _finish_setup(self) -> None:
        """As the base, with the Gram matrix's top eigenvalue by power iteration (p = 784; from the start-point
        cache when it holds it)."""
        self.n_tr, self.p_feat = self.Xtr.shape
        self.n_cls = self.Ttr.shape[1]
        self.dim_y = self.p_feat * self.n_cls
        self.XtrT = self.Xtr.T.contiguous()  # X^T Q in the Hessian-vector product, twice as fast contiguous
        mu = 2.0 * float(self.p["reg"])
        self._mu = mu
        if getattr(self, "_start", None) is not None:
            self._top = float(self._start["L_top"])
            self._L = 0.5 * self._top + mu
            return
        s = torch.sigmoid(self.x0()) / self.n_tr
        v = torch.ones(self.p_feat, dtype=torch.float64)
        top = 0.0
        for _ in range(100):  # power iteration on X^T diag(s) X (forming the 784 x 784 Gram costs ~12 GFlop)
            w = self.XtrT @ (s * (self.Xtr @ v))
            top, v = float(torch.linalg.norm(w)), w / torch.linalg.norm(w)
        self._top = top
        self._L = 0.5 * top + mu

    def weights(self, x):
        return torch.sigmoid(x)

    def reg(self, x):
        # the base's ridge is 1/2 sum_j r_j ||W_j||^2; r_j = 2 reg gives their reg ||W||^2
        return torch.full((self.p_feat,), 2.0 * float(self.p["reg"]), dtype=x.dtype)

    def x0(self):
        return torch.full((self.p["n_train"],), float(self.p["lambda0"]), dtype=torch.float64)

    # -- closed-form pieces of the truth ----------------------------------------------------------
    def _g_value(self, s: torch.Tensor, W: torch.Tensor) -> float:
        Z = self.Xtr @ W
        ce = torch.logsumexp(Z, 1) - (Z * self.Ttr).sum(1)
        return float((s * ce).mean() + self.p["reg"] * (W * W).sum())

    def _g_grad(self, s: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_W g [p, C], P = softmax(X W) [n, C])."""
        P = torch.softmax(self.Xtr @ W, 1)
        return self.XtrT @ ((s / self.n_tr)[:, None] * (P - self.Ttr)) + 2.0 * self.p["reg"] * W, P

    def _hvp(self, s: torch.Tensor, P: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """grad2_WW g [V] in closed form (softmax Hessian blocks diag(P_i) - P_i P_i^T)."""
        Z = self.Xtr @ V
        Q = P * Z - P * (P * Z).sum(1, keepdim=True)
        return self.XtrT @ ((s / self.n_tr)[:, None] * Q) + 2.0 * self.p["reg"] * V

    def inner_solution(self, x, tol: float | None = None, max_iter: int = 100):
        """y*(x) by Newton-CG to ||grad_y g|| <= tol (default the ``tol`` parameter); cached for the last x and
        warm-started from the previous solution."""
        x = torch.as_tensor(x, dtype=torch.float64)
        tol = float(self.p["tol"]) if tol is None else tol
        if self._last is not None and torch.equal(self._last[0], x):
            return self._last[1].clone()
        if self._last is None and self._start is not None and tol == float(self.p["tol"]) and torch.equal(x, self.x0()):
            self._last, self._last_tol = (x.clone(), self._start["y0"].clone()), tol
            return self._last[1].clone()
        p, C = self.p_feat, self.n_cls
        s = torch.sigmoid(x)
        W = torch.zeros(p, C, dtype=torch.float64) if self._last is None else self._last[1].reshape(p, C).clone()
        for _ in range(max_iter):
            G, P = self._g_grad(s, W)
            gn = float(torch.linalg.norm(G))
            if gn <= tol:
                break
            forcing = min(0.5, gn ** 0.5) * gn
            d, _, _ = cg_tol(lambda v: self._hvp(s, P, v.reshape(p, C)).reshape(-1), -G.reshape(-1),
                             max(forcing, 0.1 * tol))
            d = d.reshape(p, C)
            t = 1.0
            if gn > 1e-7:  # Armijo; below this the decrease is under g's rounding and Newton is quadratic anyway
                g0, slope = self._g_value(s, W), float((G * d).sum())
                while t > 1e-10 and self._g_value(s, W + t * d) > g0 + 1e-4 * t * slope:
                    t *= 0.5
            W = W + t * d
        else:
            raise ParameterError(f"problem 'datacleaning': Newton-CG did not reach ||grad_y g|| <= {tol:g} in "
                                 f"{max_iter} steps (||grad|| = {gn:.2e})")
        y = W.reshape(-1)
        self._last, self._last_tol = (x.clone(), y.clone()), tol
        return y

    def value(self, x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return float(self.outer(x, self.inner_solution(x)))

    def value_and_hypergradient(self, x) -> tuple[float, torch.Tensor]:
        """(Phi(x), grad Phi(x)): Newton-CG y*, then CG on H V = grad_W f to residual <= tol (warm-started)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        p, C = self.p_feat, self.n_cls
        W = self.inner_solution(x).reshape(p, C)
        s = torch.sigmoid(x)
        Pv = torch.softmax(self.Xval @ W, 1)
        gyf = self.Xval.T @ (Pv - self.Tval) / self.Xval.shape[0]
        _, P = self._g_grad(s, W)
        at_start = self._v_warm is None and torch.equal(x, self.x0())
        if at_start and self._start is not None:
            V = self._start["v0"].clone()
        else:
            V, res, _ = cg_tol(lambda v: self._hvp(s, P, v.reshape(p, C)).reshape(-1), gyf.reshape(-1),
                               float(self.p["tol"]), v0=self._v_warm)
            if not res <= float(self.p["tol"]):
                raise ParameterError(f"problem 'datacleaning': CG did not reach residual {self.p['tol']:g} ({res:.2e})")
            if at_start and self._last_tol == float(self.p["tol"]):
                self._write_start_cache(W.reshape(-1), V)
        self._v_warm = V.clone()
        V = V.reshape(p, C)
        cross = ((P - self.Ttr) * (self.Xtr @ V)).sum(1) * (s * (1 - s)) / self.n_tr
        return float(self.outer(x, W.reshape(-1))), self.p["outer_reg"] * x - cross

    def hypergradient(self, x):
        return self.value_and_hypergradient(x)[1]

    def stationary_points(self):
        return []
