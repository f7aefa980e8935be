"""Multinomial logistic regression with l2 hyperparameters per class or per feature on a libsvm data set
(real data, issue 15).

benchopt's benchmark_bilevel "multilogreg" objective (the covtype experiments of Dagreou, Ablin, Vaiter,
Moreau, "A framework for bilevel optimization that enables stochastic and global variance reduction
algorithms", NeurIPS 2022, Sec. 4 / App. C; the 20 Newsgroups tf-idf experiment of Ji, Yang, Liang,
ICML 2021, Sec. 5, with per-feature weights), W in R^{p x C}:

    g(x, W) = 1/n_tr sum_i CE(W^T a_i, t_i) + 1/2 sum_c exp(x_c) ||W_{:,c}||^2      (reg_per="class", x in R^C)
                                           or 1/2 sum_j exp(x_j) ||W_{j,:}||^2      (reg_per="feature", x in R^p)
    f(x, W) = 1/n_val sum_i CE(W^T a'_i, t'_i) + outer_reg/2 ||x||^2

The file (``dataset``, libsvm format: covtype.scale, news20.scale...) is read from the data folder
(``$BLOBENCH_DATA`` or ``--data-dir``, :mod:`blobench.core.data`); its label values, sorted, are the classes
0..C-1. After a seeded permutation its first ``n_train`` rows train and the next ``n_val`` validate;
``max_features`` > 0 keeps the columns with the most nonzeros among the training rows (20news has 62061
tf-idf columns; dim_y = p*C). ``stochastic=true`` makes both levels finite sums over their rows.

Ground truth: the float64 damped-Newton + implicit-function solve of
:class:`blobench.problems.logreg_l2.SoftmaxBilevel` (closed-form softmax Hessian, Ji et al. 2021 eq. (2)); the
penalty's Hessian diag(exp(x_c)) kron-ordered by :meth:`ridge_diag`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from blobench import harness
from blobench.core.data import data_dir, load_libsvm
from blobench.core.errors import ParameterError
from blobench.core.params import Param
from blobench.problems.logreg_l2 import SoftmaxBilevel


@harness.register_problem("libsvm-multilogreg")
class LibsvmMultiLogreg(SoftmaxBilevel):
    """Multinomial logistic regression, l2 weights exp(lambda) per class or per feature, on a libsvm file from $BLOBENCH_DATA (benchmark_bilevel's multilogreg objective)."""

    params = {
        "dataset": Param("str", default="covtype", doc="libsvm file name in the data folder"),
        "n_train": Param("int", default=1000, low=2, doc="training rows"),
        "n_val": Param("int", default=1000, low=1, doc="validation rows"),
        "n_test": Param("int", default=0, low=0, doc="test rows after the validation rows, for test_error (0: none)"),
        "reg_per": Param("str", default="class", choices=("class", "feature"), doc="one hyperparameter per class (dim_x = C) or per feature (dim_x = p)"),
        "max_features": Param("int", default=0, low=0, doc="keep the p columns with most nonzeros in the training rows (0: all)"),
        "outer_reg": Param("float", default=1e-3, low=0, doc="outer ridge on lambda"),
        "lambda0": Param("float", default=-2.0, doc="x0: initial log-regularisation"),
        "seed": Param("int", default=0, low=0, doc="split seed"),
        "stochastic": Param("bool", default=False, doc="minibatches of the finite sum"),
    }

    heldout = True  # real data: test/val/train errors along convergence (issue 25)

    @classmethod
    def data_files(cls, params: dict[str, Any]) -> list[Path]:
        """The data file a parameter set reads (its sha256 enters the cell key: blobench.engine.matrix.cell_key)."""
        return [data_dir() / params["dataset"]]

    def setup(self) -> None:
        p = self.p
        X, b = load_libsvm(p["dataset"], dense=False)
        labels, t = np.unique(b, return_inverse=True)
        C = len(labels)
        if C < 2:
            raise ParameterError(f"problem 'libsvm-multilogreg': {p['dataset']!r} has {C} label value, needs >= 2")
        if p["n_train"] + p["n_val"] + p["n_test"] > len(t):
            raise ParameterError(f"problem 'libsvm-multilogreg': n_train + n_val + n_test = "
                                 f"{p['n_train'] + p['n_val'] + p['n_test']} exceeds the {len(t)} rows of {p['dataset']!r}")
        order = np.random.default_rng(p["seed"]).permutation(len(t))
        tr, va = order[:p["n_train"]], order[p["n_train"]:p["n_train"] + p["n_val"]]
        cols = np.arange(X.shape[1])
        if 0 < p["max_features"] < X.shape[1]:  # most nonzeros first; ties by column index (stable sort)
            nnz = np.asarray((X[tr] != 0).sum(0)).ravel()
            cols = np.sort(np.argsort(-nnz, kind="stable")[:p["max_features"]])
        dense = lambda rows: torch.tensor(np.asarray(X[rows][:, cols].todense()), dtype=torch.float64)  # noqa: E731
        onehot = np.eye(C)
        self.Xtr, self.Xval = dense(tr), dense(va)
        self.Ttr = torch.tensor(onehot[t[tr]], dtype=torch.float64)
        self.Tval = torch.tensor(onehot[t[va]], dtype=torch.float64)
        te = order[p["n_train"] + p["n_val"]:p["n_train"] + p["n_val"] + p["n_test"]]
        self.Xtest, self.ytest = dense(te), torch.tensor(t[te])
        self.dim_x = C if p["reg_per"] == "class" else len(cols)
        self._finish_setup()

    def weights(self, x):
        return torch.ones(self.n_tr, dtype=x.dtype)

    def reg(self, x):
        return torch.exp(x)

    def x0(self):
        return torch.full((self.dim_x,), float(self.p["lambda0"]), dtype=torch.float64)

    def ridge(self, x, W):
        if self.p["reg_per"] == "feature":
            return super().ridge(x, W)
        return 0.5 * (self.reg(x) * (W * W).sum(0)).sum()

    def ridge_diag(self, x):
        if self.p["reg_per"] == "feature":
            return super().ridge_diag(x)
        return self.reg(x).repeat(self.p_feat)  # vec(W) row-major: index j*C + c carries exp(x_c)
