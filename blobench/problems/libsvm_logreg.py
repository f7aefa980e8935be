"""Binary logistic regression with per-feature l2 hyperparameters on a libsvm data set (real data, issue 15).

benchopt's benchmark_bilevel "logreg" objective (the ijcnn1 experiments of Dagreou et al. 2022):

    g(x, theta) = 1/n_tr sum_i log(1 + exp(-b_i a_i^T theta)) + 1/2 sum_j exp(x_j) theta_j^2     (inner)
    f(x, theta) = 1/n_val sum_i log(1 + exp(-b'_i a'_i^T theta)) + outer_reg/2 ||x||^2            (outer)

labels b in {-1, +1} (a file's two label values are mapped to -1, +1). The file (``dataset``) is read
from the data folder (``$BLOBENCH_DATA`` or ``--data-dir``, :mod:`blobench.core.data`); after a seeded permutation its first
``n_train`` rows train and the next ``n_val`` validate. ``stochastic=true`` makes both levels finite
sums over their rows. Ground truth: the float64 Newton + implicit-function solve of
:class:`blobench.problems.logreg_l2.SoftmaxBilevel` with the closed-form Hessian
H = 1/n A^T diag(s(1 - s)) A + diag(exp(x)), s = sigmoid(b a^T theta).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.functional import softplus

from blobench import harness
from blobench.core.data import data_dir, load_libsvm
from blobench.core.errors import ParameterError
from blobench.core.params import Param
from blobench.problems.logreg_l2 import SoftmaxBilevel


@harness.register_problem("libsvm-logreg")
class LibsvmLogreg(SoftmaxBilevel):
    """Binary logistic regression, per-feature l2 weights exp(lambda_j), on a libsvm file from $BLOBENCH_DATA (benchmark_bilevel's logreg objective)."""

    params = {
        "dataset": Param("str", default="ijcnn1", doc="libsvm file name in the data folder"),
        "n_train": Param("int", default=1000, low=2, doc="training rows"),
        "n_val": Param("int", default=1000, low=1, doc="validation rows"),
        "outer_reg": Param("float", default=1e-3, low=0, doc="outer ridge on lambda"),
        "lambda0": Param("float", default=-2.0, doc="x0: initial log-regularisation"),
        "seed": Param("int", default=0, low=0, doc="split seed"),
        "stochastic": Param("bool", default=False, doc="minibatches of the finite sum"),
    }

    @classmethod
    def data_files(cls, params: dict[str, Any]) -> list[Path]:
        """The data file a parameter set reads (its sha256 enters the cell key: blobench.engine.matrix.cell_key)."""
        return [data_dir() / params["dataset"]]

    def setup(self) -> None:
        p = self.p
        X, b = load_libsvm(p["dataset"])
        labels = np.unique(b)
        if len(labels) != 2:
            raise ParameterError(f"problem 'libsvm-logreg': {p['dataset']!r} has {len(labels)} label values, needs 2")
        b = np.where(b == labels[1], 1.0, -1.0)
        if p["n_train"] + p["n_val"] > len(b):
            raise ParameterError(f"problem 'libsvm-logreg': n_train + n_val = {p['n_train'] + p['n_val']} exceeds the "
                                 f"{len(b)} rows of {p['dataset']!r}")
        order = np.random.default_rng(p["seed"]).permutation(len(b))
        tr, va = order[:p["n_train"]], order[p["n_train"]:p["n_train"] + p["n_val"]]
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        self.Xtr, self.btr, self.Xval, self.bval = t(X[tr]), t(b[tr]), t(X[va]), t(b[va])
        self.n_tr, self.p_feat = self.Xtr.shape
        self.n_cls = 1
        self.dim_x = self.dim_y = self.p_feat
        r = self.reg(self.x0())
        self._mu = float(r.min())
        self._L = 0.25 * float(torch.linalg.eigvalsh(self.Xtr.T @ self.Xtr / self.n_tr).max()) + float(r.max())

    heldout = True  # real data: val/train errors along convergence (issue 25)

    def heldout_errors(self, y: torch.Tensor) -> dict[str, float]:
        """Misclassification rates sign(A y) != b (0 counts as -1) on the training and validation rows."""
        y = torch.as_tensor(y, dtype=torch.float64)
        err = lambda A, b: float((torch.where(A @ y > 0, 1.0, -1.0) != b).double().mean())  # noqa: E731
        return {"train_error": err(self.Xtr, self.btr), "val_error": err(self.Xval, self.bval)}

    def reg(self, x):
        return torch.exp(x)

    def weights(self, x):
        return torch.ones(self.n_tr, dtype=x.dtype)

    def x0(self):
        return torch.full((self.p_feat,), float(self.p["lambda0"]), dtype=torch.float64)

    def inner(self, x, y, batch=None):
        A, b = (self.Xtr, self.btr) if batch is None else (self.Xtr[batch["i"]], self.btr[batch["i"]])
        return softplus(-b * (A @ y)).mean() + 0.5 * (self.reg(x) * y * y).sum()

    def outer(self, x, y, batch=None):
        A, b = (self.Xval, self.bval) if batch is None else (self.Xval[batch["j"]], self.bval[batch["j"]])
        return softplus(-b * (A @ y)).mean() + 0.5 * self.p["outer_reg"] * (x * x).sum()

    def inner_hessian(self, x, y):
        s = torch.sigmoid(self.btr * (self.Xtr @ y))
        H = (self.Xtr * (s * (1 - s))[:, None]).T @ self.Xtr / self.n_tr + torch.diag(self.reg(x))
        return 0.5 * (H + H.T)
