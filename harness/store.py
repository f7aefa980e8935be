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


def finished_keys(run_dir: Path) -> set[str]:
    d = Path(run_dir) / SHARDS
    if not d.is_dir():
        return set()
    return {p.stem for p in d.glob("*.parquet")}


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


def load(run: str | Path) -> pd.DataFrame:
    """All rows of all finished cells of a run, as one tidy DataFrame."""
    run_dir = resolve_run(run)
    files = sorted((run_dir / SHARDS).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True, sort=False)
