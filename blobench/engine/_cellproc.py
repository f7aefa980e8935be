"""Worker processes of the runner (blobench.engine.runner), started as fresh interpreters.

``python -m blobench.engine._cellproc --serve FD PLUGINS_JSON``: a pool worker. It talks to the runner over the
inherited socket FD (a multiprocessing Connection): it loads the plugins, says ("ready", None), then
runs the cells it is sent (``blobench.engine.runner._worker_main``) until it is sent None or the socket closes.
On Linux it asks the kernel to kill it if the runner dies, so no orphan worker writes shards after its
runner has gone.

``python -m blobench.engine._cellproc``: one cell (``blobench.engine.runner.run_cell_isolated``). The parent writes a
pickled (cell, key, run_dir, plugins, bound, inputs, data_dir) to stdin and closes it; the child imports torch and the
plugins, writes b"R" on stdout (the parent's deadline starts then), runs the cell (which writes its
shard) and writes the pickled summary. Anything the cell prints goes to stderr.
"""
import json
import os
import pickle
import signal
import sys


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the closed socket stops an idle worker instead
        pass


def serve(fd: int, plugins: list) -> None:
    from multiprocessing.connection import Connection

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(2, 1)  # print() in a plugin goes to stderr
    from blobench.engine.runner import _worker_main

    _worker_main(Connection(fd), plugins)


def one_cell() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    payload = sys.stdin.buffer.read()
    cell, key, run_dir, plugins, bound, inputs, data_dir = pickle.loads(payload)
    if data_dir:
        os.environ["BLOBENCH_DATA"] = data_dir
    from blobench.engine.runner import _pin_threads, _warm_up, load_plugins, run_cell

    _pin_threads()
    load_plugins(plugins)
    _warm_up()
    out.write(b"R")
    out.flush()
    try:
        res = run_cell(cell, key, run_dir, 1, None, plugins, bound, inputs, data_dir)
    except BaseException as exc:  # noqa: BLE001 - e.g. a full disk: re-raised in the parent
        res = exc
    out.write(pickle.dumps(res))
    out.flush()
    sys.stderr.flush()
    os._exit(0)  # the shard is written and the result sent: skip the interpreter's (slow) teardown


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        one_cell()
