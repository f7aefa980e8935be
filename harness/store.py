"""Run folders: runs/<run-id>/manifest.json and one parquet shard per finished cell.

Shards are written atomically (temporary file in the same folder, fsync, rename), so
a killed run never leaves a torn shard; ``load`` reads every shard into one DataFrame.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import BlobenchError

SHARDS = "cells"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_shard(run_dir: Path, key: str, df: pd.DataFrame) -> Path:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    path = Path(run_dir) / SHARDS / f"{key}.parquet"
    atomic_write_bytes(path, buf.getvalue())
    return path


def shard_path(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / SHARDS / f"{key}.parquet"


def _shard_files(run_dir: Path) -> list[Path]:
    """Finished shards only: temporary files (".tmp-*") left by a killed writer are never shards."""
    d = Path(run_dir) / SHARDS
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith("."))


def finished_keys(run_dir: Path) -> set[str]:
    return {p.stem for p in _shard_files(run_dir)}


STATUS_LOG = "statuses.jsonl"


def log_status(run_dir: Path, key: str, status: str) -> None:
    """Append ``{key: status}`` to the run's status log (a cache of the shards' status column).

    The shards stay the truth: a line lost or torn by a kill is re-read from its shard.
    """
    with open(Path(run_dir) / STATUS_LOG, "a") as fh:
        fh.write(json.dumps({"key": key, "status": status}) + "\n")


def _status_log(run_dir: Path) -> dict[str, str]:
    p = Path(run_dir) / STATUS_LOG
    out: dict[str, str] = {}
    if p.is_file():
        for line in p.read_text().splitlines():
            try:
                d = json.loads(line)
                out[d["key"]] = d["status"]
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill
    return out


def shard_statuses(run_dir: Path, keys: set[str] | None = None) -> dict[str, str]:
    """Status of each finished shard: from the status log, else from the shard's ``status`` column."""
    import pyarrow.parquet as pq

    logged = _status_log(run_dir)
    out: dict[str, str] = {}
    for p in _shard_files(run_dir):
        k = p.stem
        if keys is not None and k not in keys:
            continue
        if k in logged:
            out[k] = logged[k]
            continue
        col = pq.read_table(p, columns=["status"]).column("status").to_pylist()
        out[k] = str(col[0]) if col else "ok"
    return out


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete ".tmp-*" files a killed writer left behind (call only while holding the run lock)."""
    n = 0
    for d in (Path(run_dir), Path(run_dir) / SHARDS):
        if d.is_dir():
            for p in d.glob(".tmp-*"):
                try:
                    p.unlink()
                    n += 1
                except FileNotFoundError:
                    pass
    return n


class RunLockedError(BlobenchError):
    """Another process is writing to the same run folder."""


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``; the kernel drops it when the holder dies.

    A second writer gets a RunLockedError naming the holder's pid instead of waiting, and a
    lock left by a SIGKILLed process never blocks (flock locks die with their process).
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RunLockedError(
                f"run folder {str(self.path.parent)!r} is being written by another blobench process (pid {holder}); "
                "wait for it to finish or choose another --run-id"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(Path(run_dir) / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())


def read_manifest(run_dir: Path) -> dict[str, Any]:
    p = Path(run_dir) / "manifest.json"
    if not p.is_file():
        raise BlobenchError(f"{run_dir}: not a run folder (no manifest.json)")
    return json.loads(p.read_text())


def resolve_run(run: str | Path) -> Path:
    """A run folder path, or a run id under ./runs."""
    p = Path(run)
    if (p / "manifest.json").is_file():
        return p
    q = Path("runs") / str(run)
    if (q / "manifest.json").is_file():
        return q
    raise BlobenchError(f"no run folder {str(run)!r} (looked for {p}/manifest.json and {q}/manifest.json)")


CURRENT = "current_keys.json"


def write_current_keys(run_dir: Path, keys: list[str]) -> None:
    """Record the keys of the matrix last run into this folder (``load`` shows only those)."""
    atomic_write_bytes(Path(run_dir) / CURRENT, json.dumps(sorted(set(keys))).encode())


def load(run: str | Path, stale: bool = False) -> pd.DataFrame:
    """All rows of the finished cells of a run, as one tidy DataFrame.

    Shards whose key is no longer part of the matrix last run into the folder (e.g. after
    an estimator's source file changed, which changes its cells' keys) are kept on disk but
    left out, unless ``stale=True``.
    """
    run_dir = resolve_run(run)
    files = _shard_files(run_dir)
    cur = run_dir / CURRENT
    if not stale and cur.is_file():
        keep = set(json.loads(cur.read_text()))
        files = [f for f in files if f.stem in keep]
    if not files:
        return pd.DataFrame()
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True, sort=False)
