"""Data hyper-cleaning: per-sample weights sigmoid(lambda_i) on a training set with corrupted labels.

The MNIST hyper-cleaning structure of Franceschi et al. 2017 as used by Ji, Yang, Liang,
"Bilevel Optimization: Convergence Analysis and Enhanced Design" (ICML 2021, arXiv 2010.07962,
Section 5, "hyper-cleaning" experiment; stocBiO/AID-BiO/ITD-BiO comparisons):

    g(x, W) = 1/n_tr sum_i sigmoid(x_i) CE(W^T a_i, t~_i) + reg/2 ||W||^2     (inner, mu = reg)
    f(x, W) = 1/n_val sum_i CE(W^T a'_i, t'_i) + outer_reg/2 ||x||^2          (outer, clean labels)

t~_i is the true label replaced, with probability ``corruption``, by a uniformly drawn other
class. ``outer_reg`` (default 1e-3) keeps a finite stationary point (sigmoid saturates, so
without it the optimal weights of corrupted samples run off to -inf).

Data: ``data="synthetic"`` (Gaussian teacher as in ``logreg-l2``) or ``data="digits"``: the
8x8 digits set that ships inside scikit-learn (``sklearn.datasets.load_digits``, no download),
standardised, first ``n_train`` samples for training and the next ``n_val`` for validation.

Ground truth: Newton + implicit-function theorem in float64 (see blobench/problems/logreg_l2.py);
stationary point by L-BFGS to ||grad Phi|| < 1e-8, cached.
"""
from __future__ import annotations

import numpy as np
import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param
from blobench.problems.logreg_l2 import SoftmaxBilevel, teacher_data


def corrupt(rng: np.random.Generator, onehot: torch.Tensor, rate: float) -> tuple[torch.Tensor, np.ndarray]:
    """Replace each label with prob ``rate`` by a different class drawn uniformly; returns (labels, corrupted mask)."""
    n, C = onehot.shape
    t = onehot.argmax(1).numpy().copy()
    bad = rng.random(n) < rate
    shift = rng.integers(1, C, size=n)
    t[bad] = (t[bad] + shift[bad]) % C
    return torch.tensor(np.eye(C)[t], dtype=torch.float64), bad


def split_labelled(rng: np.random.Generator, X: np.ndarray, t: np.ndarray, C: int, n_train: int, n_val: int,
                   owner: str, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Xtr, Ttr, Xval, Tval), one-hot targets: the samples of classes < C, permuted by ``rng``,
    standardised per feature ((X - mean) / (std + 1)), the first n_train training and the next n_val
    validating. Shared by ``data="digits"`` and blobench/problems/mnist_cleaning.py's array file."""
    keep = t < C
    X, t = X[keep], t[keep]
    if n_train + n_val > len(t):
        raise ParameterError(f"{owner}: n_train + n_val = {n_train + n_val} exceeds the {len(t)} {what} of classes < {C}")
    order = rng.permutation(len(t))
    X, t = X[order], t[order]
    X = (X - X.mean(0)) / (X.std(0) + 1.0)
    T = np.eye(C)[t]
    n = n_train
    return (torch.tensor(X[:n]), torch.tensor(T[:n]), torch.tensor(X[n:n + n_val]), torch.tensor(T[n:n + n_val]))


@harness.register_problem("hyper-cleaning")
class HyperCleaning(SoftmaxBilevel):
    """Data hyper-cleaning: sample weights sigmoid(lambda_i) on label-corrupted training data (Ji et al. 2021, Sec. 5)."""

    params = {
        "data": Param("str", default="synthetic", choices=("synthetic", "digits"), doc="generated data or sklearn's shipped digits"),
        "n_train": Param("int", default=40, low=2, doc="training samples = dim_x"),
        "n_val": Param("int", default=60, low=1, doc="validation samples (clean labels)"),
        "features": Param("int", default=5, low=1, doc="p (synthetic only; digits has 64)"),
        "classes": Param("int", default=3, low=2, high=10, doc="C (synthetic; digits uses its first C classes)"),
        "corruption": Param("float", default=0.3, low=0, high=1, high_open=True, doc="label corruption rate"),
        "reg": Param("float", default=0.1, low=0, low_open=True, doc="inner ridge = mu"),
        "outer_reg": Param("float", default=1e-3, low=0, doc="outer ridge on lambda (keeps a finite stationary point)"),
        "snr": Param("float", default=3.0, low=0, doc="teacher logit scale (synthetic)"),
        "seed": Param("int", default=0, low=0, doc="data / corruption seed"),
        "stochastic": Param("bool", default=False, doc="minibatches of the finite sum (n_train inner, n_val outer terms)"),
    }

    def setup(self) -> None:
        p = self.p
        rng = np.random.default_rng(p["seed"])
        Xtr, Ttr, self.Xval, self.Tval = self.load_split(rng)
        self.Xtr = Xtr
        self.Ttr, self.corrupted = corrupt(rng, Ttr, p["corruption"])
        self.dim_x = p["n_train"]
        self._finish_setup()

    def load_split(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Xtr, clean one-hot Ttr, Xval, Tval), drawn from ``rng`` before the corruption is (a subclass
        reading another source overrides this: blobench/problems/mnist_cleaning.py)."""
        p = self.p
        C = p["classes"]
        if p["data"] == "synthetic":
            W0 = rng.standard_normal((p["features"], C))
            Xtr, Ttr = teacher_data(rng, p["n_train"], p["features"], C, p["features"], p["snr"], W0)
            Xval, Tval = teacher_data(rng, p["n_val"], p["features"], C, p["features"], p["snr"], W0)
            return Xtr, Ttr, Xval, Tval
        else:
            try:
                from sklearn.datasets import load_digits
            except ImportError as e:  # pragma: no cover - scikit-learn is optional
                raise ParameterError("problem 'hyper-cleaning': data='digits' needs scikit-learn installed") from e
            d = load_digits()
            return split_labelled(rng, d.data, d.target, C, p["n_train"], p["n_val"], "problem 'hyper-cleaning'", "digits")

    @property
    def heldout(self) -> bool:
        """Held-out errors along convergence on the shipped digits (real data), not on generated data."""
        return self.p.get("data") == "digits"

    def weights(self, x):
        return torch.sigmoid(x)

    def reg(self, x):
        return torch.full((self.p_feat,), float(self.p["reg"]), dtype=x.dtype)
