"""Atomic file writes, shared by the run store and the registry's catalog cache."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".blobench-tmp-"


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a torn one:
    a temporary ``.blobench-tmp-*`` file in the same folder, flushed and (unless ``fsync=False``) fsynced,
    then renamed over ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not exc.filename:  # a full or read-only disk: say which file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
