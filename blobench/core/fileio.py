"""Atomic file writes, shared by the run store and the registry's catalog cache."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".blobench-tmp-"


def current_umask() -> int:
    """The process umask (read from /proc on Linux, else set and restored)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a torn one:
    a temporary ``.blobench-tmp-*`` file in the same folder, flushed and (unless ``fsync=False``) fsynced,
    then renamed over ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
        # mkstemp creates 0600; a run folder on a shared filesystem must be readable by Dask workers running as
        # another user and by colleagues, as any file the user creates: the mode the umask gives (issue 23)
        os.fchmod(fd, 0o666 & ~current_umask())
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
