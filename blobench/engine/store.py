"""Run folders: runs/<run-id>/manifest.json and one parquet shard per finished cell.

Shards are written atomically (temporary file in the same folder, fsync, rename), so
a killed run never leaves a torn shard; ``load`` reads every shard into one DataFrame.

Integrity: every shard ``cells/<key>.parquet`` carries its cell key (the ``key`` column
and the parquet metadata ``blobench.key``) and has a checksum sidecar
``cells/<key>.sha256`` (one JSON line: key, sha256 of the shard's bytes, size, status),
written before the shard. ``load`` verifies both and refuses a mismatch with one line
naming the file; a rerun treats a shard that fails the check as not done, moves it into
``<run>/corrupt/`` and recomputes it (:func:`check_shards`, :func:`quarantine`).

Cleanup touches only files blobench names: temporaries are ``.blobench-tmp-*``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from blobench.core.fileio import TMP_PREFIX, atomic_write_bytes  # noqa: F401 (re-exported)
from blobench.core.errors import BlobenchError

SHARDS = "cells"
SUM_SUFFIX = ".sha256"
CORRUPT = "corrupt"
KEY_META = b"blobench.key"


def shard_bytes(key: str, df: Any) -> bytes:
    """The parquet bytes of a shard, with the cell key in the file's metadata."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), KEY_META: key.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def sum_path(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / SHARDS / f"{key}{SUM_SUFFIX}"


def write_shard(run_dir: Path, key: str, df: Any) -> Path:
    """Write one cell's rows: the checksum sidecar first, then the shard (both atomic).

    A kill between the two leaves a sidecar whose checksum the (old or missing) shard does
    not match, so the cell counts as not done; never a shard that passes unchecked.
    """
    data = shard_bytes(key, df)
    status = str(df["status"].iloc[0]) if "status" in df.columns and len(df) else "ok"
    side = {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "status": status}
    # no fsync for the sidecar: if a crash loses it, the shard merely counts as not done and is recomputed
    atomic_write_bytes(sum_path(run_dir, key), (json.dumps(side) + "\n").encode(), fsync=False)
    path = shard_path(run_dir, key)
    atomic_write_bytes(path, data)
    return path


def shard_path(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / SHARDS / f"{key}.parquet"


def _shard_files(run_dir: Path) -> list[Path]:
    """Shard files only: temporary files (".blobench-tmp-*") left by a killed writer are never shards."""
    d = Path(run_dir) / SHARDS
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith("."))


def finished_keys(run_dir: Path) -> set[str]:
    """Keys with a shard file (verified or not: see :func:`check_shards`)."""
    return {p.stem for p in _shard_files(run_dir)}


def _read_sum(run_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        d = json.loads(sum_path(run_dir, key).read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def shard_problem(run_dir: Path, key: str, data: bytes | None = None) -> str:
    """Why the shard of ``key`` cannot be trusted ("" if it can): a missing or unreadable checksum
    sidecar, a sidecar naming another key, or bytes whose sha256 differs from the recorded one."""
    side = _read_sum(run_dir, key)
    if side is None:
        return "no checksum (no readable " + f"{key}{SUM_SUFFIX}" + " beside it)"
    if side.get("key") != key:
        return f"its checksum file names cell {side.get('key')!r}"
    if data is None:
        try:
            data = shard_path(run_dir, key).read_bytes()
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
    if len(data) != side.get("size") or hashlib.sha256(data).hexdigest() != side.get("sha256"):
        return "checksum mismatch (the file was truncated, corrupted or replaced)"
    return ""


def check_shards(run_dir: Path, keys: set[str] | None = None) -> dict[str, str]:
    """{key: why} for every shard (among ``keys``) that fails :func:`shard_problem`."""
    out = {}
    for p in _shard_files(run_dir):
        if keys is not None and p.stem not in keys:
            continue
        why = shard_problem(run_dir, p.stem)
        if why:
            out[p.stem] = why
    return out


def quarantine(run_dir: Path, key: str) -> Path:
    """Move a bad shard (and its sidecar) into ``<run>/corrupt/`` so the cell is recomputed; returns the new path."""
    d = Path(run_dir) / CORRUPT
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    while (d / f"{key}.{n}.parquet").exists():
        n += 1
    dest = d / f"{key}.{n}.parquet"
    os.replace(shard_path(run_dir, key), dest)
    side = sum_path(run_dir, key)
    if side.exists():
        os.replace(side, d / f"{key}.{n}{SUM_SUFFIX}")
    return dest


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
    """Status of each shard: from the status log, else its sidecar, else the shard's ``status`` column."""
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
        side = _read_sum(run_dir, k)
        if side and isinstance(side.get("status"), str):
            out[k] = side["status"]
            continue
        col = pq.read_table(p, columns=["status"]).column("status").to_pylist()
        out[k] = str(col[0]) if col else "ok"
    return out


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete the temporaries a killed writer left behind (call only while holding the run lock).

    Only names blobench itself gives are touched: ``.blobench-tmp-*`` in the run folder and
    its ``cells/`` folder, and (older blobench) ``.tmp-*.parquet`` / ``.tmp-*.json`` inside ``cells/``.
    """
    n = 0
    run_dir = Path(run_dir)
    cands = [*run_dir.glob(TMP_PREFIX + "*"), *(run_dir / SHARDS).glob(TMP_PREFIX + "*"),
             *(run_dir / SHARDS).glob(".tmp-*.parquet"), *(run_dir / SHARDS).glob(".tmp-*.json")]
    for p in cands:
        if p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                n += 1
            except FileNotFoundError:
                pass
    return n


def validate_run_id(run_id: Any) -> str:
    """A run id names one folder inside the runs folder: no path separator, not "." or "..", not empty."""
    from blobench.core.errors import ParameterError

    bad = (not isinstance(run_id, str) or not run_id or run_id in (".", "..") or "/" in run_id or "\\" in run_id
           or "\0" in run_id or (os.altsep and os.altsep in run_id) or run_id != run_id.strip())
    if bad:
        raise ParameterError(f"run id {run_id!r} must be one folder name (no path separator, not '.' or '..')")
    return run_id


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
    try:
        man = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # truncated, corrupted, unreadable
        raise BlobenchError(f"{p}: unreadable run manifest ({type(exc).__name__}: {str(exc)[:120]}); rerun the "
                            "run's matrix into this folder to rewrite it") from None
    if not isinstance(man, dict):
        raise BlobenchError(f"{p}: not a run manifest (a JSON {type(man).__name__}, not an object)")
    return man


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


def read_current_keys(run_dir: Path) -> set[str] | None:
    """The keys :func:`write_current_keys` recorded (None without the file); a BlobenchError naming the file if it
    is truncated or corrupted."""
    p = Path(run_dir) / CURRENT
    if not p.is_file():
        return None
    try:
        keys = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BlobenchError(f"{p}: unreadable ({type(exc).__name__}: {str(exc)[:120]}); rerun the run's matrix into "
                            "this folder to rewrite it") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BlobenchError(f"{p}: not a list of cell keys")
    return set(keys)


def _arrow_owned(data: bytes) -> Any:
    """``data`` copied into memory that arrow owns. A parquet read of a Python-owned buffer (``io.BytesIO`` or
    ``pa.py_buffer``) leaves futures in arrow's thread pool that drop the last reference later, from that thread;
    dropping a Python-owned buffer takes the GIL, and when that happens during interpreter shutdown the process
    aborts ("terminate called without an active exception", exit -6: seen about one run in seven on a loaded host,
    after a serial run that read its shards back). An arrow-owned copy needs no GIL to be freed."""
    import numpy as np
    import pyarrow as pa

    buf = pa.allocate_buffer(len(data))
    np.frombuffer(buf, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return buf


def read_shard(run_dir: Path, key: str) -> Any:
    """One verified shard as a DataFrame; a BlobenchError naming the file if its checksum or key does not match."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = shard_path(run_dir, key)
    hint = "; rerun `blobench run` on its matrix to move it aside and recompute the cell"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BlobenchError(f"{path}: cannot read shard: {exc.strerror or exc}") from None
    why = shard_problem(run_dir, key, data)
    if why:
        raise BlobenchError(f"{path}: {why}{hint}")
    try:
        table = pq.read_table(pa.BufferReader(_arrow_owned(data)))
    except Exception as exc:  # noqa: BLE001 - matching checksum but unparsable: written broken
        raise BlobenchError(f"{path}: unreadable shard ({type(exc).__name__}: {exc}){hint}") from None
    meta = (table.schema.metadata or {}).get(KEY_META, b"").decode()
    df = table.to_pandas()
    keys = set(df["key"].astype(str)) if "key" in df.columns else set()
    if meta != key or (keys and keys != {key}):
        holder = meta if meta != key else ", ".join(sorted(keys - {key}) or sorted(keys))
        raise BlobenchError(f"{path}: holds cell {holder!r}, not {key!r} (a shard copied over another){hint}")
    return df


def load(run: str | Path, stale: bool = False) -> Any:
    """All rows of the finished cells of a run, as one tidy DataFrame.

    Every shard is verified first (checksum and cell key, :func:`read_shard`); a shard that
    fails raises a BlobenchError naming its file, so a corrupted result never loads as numbers.
    Shards whose key is no longer part of the matrix last run into the folder (e.g. after
    an estimator's source file changed, which changes its cells' keys) are kept on disk but
    left out, unless ``stale=True``.
    """
    import pandas as pd

    run_dir = resolve_run(run)
    files = _shard_files(run_dir)
    keep = None if stale else read_current_keys(run_dir)
    if keep is not None:
        files = [f for f in files if f.stem in keep]
    if not files:
        return pd.DataFrame()
    frames = [read_shard(run_dir, f.stem) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True, sort=False)
