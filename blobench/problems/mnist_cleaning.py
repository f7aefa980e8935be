"""Data hyper-cleaning on an MNIST-style array file (real data, issue 15).

benchopt's benchmark_bilevel "datacleaning" objective on MNIST (Dagreou et al., NeurIPS 2022, Sec. 4;
Franceschi et al. 2017; Ji, Yang, Liang, ICML 2021, Sec. 5): per-sample weights sigmoid(lambda_i) on a
training set whose labels are corrupted with probability ``corruption``, tuned on clean validation CE:

    g(x, W) = 1/n_tr sum_i sigmoid(x_i) CE(W^T a_i, t~_i) + reg/2 ||W||^2
    f(x, W) = 1/n_val sum_i CE(W^T a'_i, t'_i) + outer_reg/2 ||x||^2

It is :class:`blobench.problems.hyper_cleaning.HyperCleaning` (same objective, corruption and float64
Newton + implicit-function truth) with its data read from a file instead of generated.

File format: ``file`` (default ``mnist.npz``) in the data folder (``$BLOBENCH_DATA`` or ``--data-dir``)
is a numpy ``.npz`` archive with two arrays, ``X`` (float, [n, d]: one image a row, flattened
row-major; [n, 28, 28] is accepted and flattened) and ``y`` (integers 0..9, [n]), written e.g. by
``numpy.savez("mnist.npz", X=X, y=y)``. If it is missing the command stops with the one line
``blobench: error: data file 'mnist.npz' not found: put it in <folder> (set BLOBENCH_DATA or --data-dir to
another folder); it is available from <where>`` (exit 2).

``downsample`` k > 1 mean-pools k x k pixel blocks of a square image (28x28 -> 7x7 at k=4, so that
dim_y = 49 C and the Newton truth stays cheap); then the samples of classes < ``classes`` are
permuted by ``seed``, standardised, split n_train / n_val (:func:`blobench.problems.hyper_cleaning.split_labelled`,
shared with ``data="digits"``) and the training labels corrupted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from blobench import harness
from blobench.core.data import data_dir, load_npz
from blobench.core.errors import ParameterError
from blobench.core.params import Param
from blobench.problems.hyper_cleaning import HyperCleaning, split_labelled


def pool_images(X: np.ndarray, k: int, owner: str) -> np.ndarray:
    """Mean-pool k x k blocks of square images stored as rows of X [n, s*s]; k = 1 returns X."""
    if k == 1:
        return X
    s = int(round(np.sqrt(X.shape[1])))
    if s * s != X.shape[1] or s % k:
        raise ParameterError(f"{owner}: downsample={k} needs square images with side divisible by {k}, "
                             f"got {X.shape[1]} pixels a row")
    return X.reshape(len(X), s // k, k, s // k, k).mean(axis=(2, 4)).reshape(len(X), -1)


@harness.register_problem("mnist-cleaning")
class MnistCleaning(HyperCleaning):
    """Data hyper-cleaning, sample weights sigmoid(lambda_i), on a label-corrupted MNIST-style .npz file from $BLOBENCH_DATA (benchmark_bilevel's datacleaning)."""

    params = {
        "file": Param("str", default="mnist.npz", doc=".npz file in the data folder with arrays X [n, d] and y [n]"),
        "n_train": Param("int", default=200, low=2, doc="training samples = dim_x"),
        "n_val": Param("int", default=200, low=1, doc="validation samples (clean labels)"),
        "classes": Param("int", default=10, low=2, doc="C: the samples of labels < C are used"),
        "downsample": Param("int", default=4, low=1, doc="mean-pool k x k pixel blocks (1: raw pixels)"),
        "corruption": Param("float", default=0.5, low=0, high=1, high_open=True, doc="label corruption rate"),
        "reg": Param("float", default=0.1, low=0, low_open=True, doc="inner ridge = mu"),
        "outer_reg": Param("float", default=1e-3, low=0, doc="outer ridge on lambda (keeps a finite stationary point)"),
        "seed": Param("int", default=0, low=0, doc="split / corruption seed"),
        "stochastic": Param("bool", default=False, doc="minibatches of the finite sum (n_train inner, n_val outer terms)"),
    }

    heldout = True  # real data: val/train errors along convergence (no test split here: see datacleaning)

    @classmethod
    def data_files(cls, params: dict[str, Any]) -> list[Path]:
        """The data file a parameter set reads (its sha256 enters the cell key: blobench.engine.matrix.cell_key)."""
        return [data_dir() / params["file"]]

    def load_split(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.p
        X, y = load_npz(p["file"])
        X = pool_images(X, p["downsample"], "problem 'mnist-cleaning'")
        return split_labelled(rng, X, y, p["classes"], p["n_train"], p["n_val"], "problem 'mnist-cleaning'",
                              f"samples of {p['file']!r}")
