"""blobench/engine/store.py tested directly (issue 17, "crash safety"): atomic writes, the status log, stale-temporary
cleanup, run resolution, and the shard integrity checks (checksum sidecar, key inside the shard)."""
from __future__ import annotations

import errno
import json
import os

import pandas as pd
import pytest

from blobench.core.errors import BlobenchError, ParameterError
from blobench.engine.store import (STATUS_LOG, atomic_write_bytes, check_shards, finished_keys, load, log_status,
                           quarantine, read_shard, remove_stale_temporaries, resolve_run, shard_path, shard_problem,
                           shard_statuses, sum_path, validate_run_id, write_current_keys, write_manifest, write_shard)


def frame(key: str, status: str = "ok", value: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame([{"key": key, "status": status, "quantity": "error", "value": value}])


# -- atomic writes ---------------------------------------------------------------------------------------------

def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "d" / "f.json"
    atomic_write_bytes(p, b"first")
    atomic_write_bytes(p, b"second, longer")
    assert p.read_bytes() == b"second, longer"
    assert os.listdir(p.parent) == ["f.json"]


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_crash_during_a_write_keeps_the_old_file_whole(tmp_path, monkeypatch, where):
    """A failure at any step (a kill, a full disk) leaves the old content, not a torn or empty file, and no
    temporary. (Planted: writing straight to the target path: the "write"/"fsync" cases see a torn file.)"""
    import blobench.engine.store as store

    p = tmp_path / "f.parquet"
    atomic_write_bytes(p, b"old content")

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        real_fdopen = os.fdopen

        class Torn:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[:3])  # half written, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store.os, "fdopen", lambda fd, mode: Torn(real_fdopen(fd, mode)))
    elif where == "fsync":
        monkeypatch.setattr(store.os, "fsync", boom)
    else:
        monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(p, b"NEW CONTENT")
    assert e.value.filename == str(p) and e.value.errno == errno.ENOSPC  # the error names the file
    monkeypatch.undo()
    assert p.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["f.parquet"]


def test_temporaries_live_beside_the_target_with_blobench_names(tmp_path, monkeypatch):
    """The rename is atomic only within one filesystem: the temporary is created in the target's folder."""
    import tempfile

    import blobench.core.fileio as fileio

    seen = {}
    real = tempfile.mkstemp

    def spy(*a, **k):
        fd, name = real(*a, **k)
        seen["name"] = name
        return fd, name

    monkeypatch.setattr(fileio.tempfile, "mkstemp", spy)
    atomic_write_bytes(tmp_path / "sub" / "x.parquet", b"data")
    assert os.path.dirname(seen["name"]) == str(tmp_path / "sub")
    assert os.path.basename(seen["name"]).startswith(".blobench-tmp-")


# -- shards and their integrity -----------------------------------------------------------------------------------

def test_write_shard_records_key_and_checksum(tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    path = write_shard(tmp_path, "k1", frame("k1"))
    side = json.loads(sum_path(tmp_path, "k1").read_text())
    assert side == {"key": "k1", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "size": path.stat().st_size, "status": "ok"}
    assert pq.read_schema(path).metadata[b"blobench.key"] == b"k1"
    assert shard_problem(tmp_path, "k1") == "" and check_shards(tmp_path) == {}
    pd.testing.assert_frame_equal(read_shard(tmp_path, "k1"), frame("k1"))


def test_shard_problems_are_named(tmp_path):
    for k in ("a", "b", "c", "d"):
        write_shard(tmp_path, k, frame(k))
    shard_path(tmp_path, "a").write_bytes(shard_path(tmp_path, "a").read_bytes()[:-5])
    sum_path(tmp_path, "b").unlink()
    sum_path(tmp_path, "c").write_text(sum_path(tmp_path, "d").read_text())
    bad = check_shards(tmp_path)
    assert set(bad) == {"a", "b", "c"}
    assert "checksum mismatch" in bad["a"] and "no checksum" in bad["b"] and "names cell 'd'" in bad["c"]
    assert check_shards(tmp_path, {"a", "d"}).keys() == {"a"}
    for k in ("a", "b", "c"):
        with pytest.raises(BlobenchError, match=f"{k}.parquet: "):
            read_shard(tmp_path, k)


def test_quarantine_moves_shard_and_sidecar_aside_and_keeps_earlier_ones(tmp_path):
    write_shard(tmp_path, "k", frame("k", value=1.0))
    first = quarantine(tmp_path, "k")
    write_shard(tmp_path, "k", frame("k", value=2.0))
    second = quarantine(tmp_path, "k")
    assert first.name == "k.0.parquet" and second.name == "k.1.parquet" and first.parent.name == "corrupt"
    assert (first.parent / "k.0.sha256").is_file() and "k" not in finished_keys(tmp_path)
    assert pd.read_parquet(first)["value"].iloc[0] == 1.0 and pd.read_parquet(second)["value"].iloc[0] == 2.0


def test_load_verifies_every_shard_and_filters_to_current_keys(tmp_path):
    run = tmp_path / "runs" / "r"
    write_manifest(run, {"cells": 2})
    for k in ("a", "b", "old"):
        write_shard(run, k, frame(k))
    write_current_keys(run, ["a", "b"])
    assert sorted(load(run)["key"]) == ["a", "b"] and sorted(load(run, stale=True)["key"]) == ["a", "b", "old"]
    p = shard_path(run, "old")
    p.write_bytes(p.read_bytes()[::-1])
    assert sorted(load(run)["key"]) == ["a", "b"]  # a stale shard is not read, so not verified
    with pytest.raises(BlobenchError, match="old.parquet: checksum mismatch"):
        load(run, stale=True)


# -- the status log ---------------------------------------------------------------------------------------------

def test_status_log_is_appended_tolerates_torn_lines_and_falls_back_to_the_shards(tmp_path):
    for k, st in (("a", "ok"), ("b", "failed"), ("c", "timeout")):
        write_shard(tmp_path, k, frame(k, st))
    log_status(tmp_path, "a", "ok")
    log_status(tmp_path, "b", "failed")
    log_status(tmp_path, "b", "diverged")  # a later line wins (a retried cell)
    with open(tmp_path / STATUS_LOG, "a") as fh:
        fh.write('{"key": "c", "sta')  # torn by a kill
    lines = (tmp_path / STATUS_LOG).read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0]) == {"key": "a", "status": "ok"}
    # c's line is torn: its status comes from its sidecar; then from the parquet column if that is gone too
    assert shard_statuses(tmp_path) == {"a": "ok", "b": "diverged", "c": "timeout"}
    sum_path(tmp_path, "c").unlink()
    assert shard_statuses(tmp_path, {"c"}) == {"c": "timeout"}
    (tmp_path / STATUS_LOG).unlink()
    assert shard_statuses(tmp_path) == {"a": "ok", "b": "failed", "c": "timeout"}


# -- stale temporaries --------------------------------------------------------------------------------------------

def test_stale_temporary_cleanup_removes_only_blobench_temporaries(tmp_path):
    cells = tmp_path / "cells"
    cells.mkdir()
    ours = [tmp_path / ".blobench-tmp-1.json", cells / ".blobench-tmp-2.parquet", cells / ".tmp-3.parquet"]
    theirs = [tmp_path / ".tmp-notes.txt", tmp_path / "notes.txt", cells / ".tmp-notes.txt", tmp_path / ".tmp-x.parquet"]
    for p in ours + theirs:
        p.write_text("x")
    write_shard(tmp_path, "k", frame("k"))
    assert remove_stale_temporaries(tmp_path) == 3
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)
    assert finished_keys(tmp_path) == {"k"} and check_shards(tmp_path) == {}


def test_a_killed_writer_leaves_only_a_temporary_that_is_never_a_shard(tmp_path):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / ".blobench-tmp-abc.parquet").write_bytes(b"PAR1 torn")
    assert finished_keys(tmp_path) == set()


# -- run ids and run resolution -----------------------------------------------------------------------------------

def test_run_ids(tmp_path):
    for ok in ("smoke", "2026-01-01T10:00", "a.b", "run_1"):
        assert validate_run_id(ok) == ok
    for bad in ("", ".", "..", "../x", "a/b", "/abs", "a\\b", " x", "a\0b", None, 3):
        with pytest.raises(ParameterError, match="run id"):
            validate_run_id(bad)


def test_resolve_run_by_path_then_by_id_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path / "runs" / "r1", {"cells": 0})
    write_manifest(tmp_path / "elsewhere" / "r2", {"cells": 0})
    assert resolve_run("r1") == tmp_path.joinpath("runs", "r1").relative_to(tmp_path)
    assert resolve_run(tmp_path / "elsewhere" / "r2") == tmp_path / "elsewhere" / "r2"
    (tmp_path / "r1").mkdir()  # a folder without a manifest in the way: the run under runs/ is found
    assert str(resolve_run("r1")) == os.path.join("runs", "r1")
    with pytest.raises(BlobenchError, match="no run folder 'nope'"):
        resolve_run("nope")
