"""The Dask path: a real distributed.LocalCluster on 127.0.0.1 gives the same numbers as jobs=1.

Starting a LocalCluster (two worker processes, each importing torch) takes tens of seconds
on a loaded 2-core machine, so these tests are marked slow: ``pytest -m slow tests/test_dask.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from blobench import harness
from blobench.engine.runner import read_summary

distributed = pytest.importorskip("distributed")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import fault_matrix, write_plugin  # noqa: E402
from test_runner import SMALL, table  # noqa: E402


@pytest.mark.slow
def test_local_cluster_matches_jobs_1_and_isolates_faults(in_tmp):
    plugin = write_plugin(in_tmp)
    faults = {**fault_matrix(["test-raises", "test-sleeps"])["experiment"][0], "seeds": [0]}
    m = {**SMALL, "experiment": [*SMALL["experiment"], faults]}
    local = harness.run(m, jobs=1, run_id="local", plugins=[plugin], cell_timeout=8, progress=False)
    dask = harness.run(m, jobs=2, backend="dask", run_id="dask", plugins=[plugin], cell_timeout=8, progress=False)
    s = read_summary(dask)
    assert s["backend"] == "dask" and s["ran"] == 14
    assert s["statuses"] == {"ok": 12, "failed": 1, "timeout": 1}
    a, b = table(local), table(dask)
    ok = a.status == "ok"
    pd.testing.assert_frame_equal(a[ok].reset_index(drop=True), b[b.status == "ok"].reset_index(drop=True),
                                  check_exact=True)
    # the timeout on a Dask worker (the cell in a child process, killed at the deadline) stopped the 20 s sleeper
    sl = harness.load(dask).query("estimator == 'test-sleeps'")
    assert (sl.status == "timeout").all() and sl.cell_seconds.max() < 15


@pytest.mark.slow
def test_explicit_scheduler_address(in_tmp):
    """--scheduler ADDRESS: connect to an already running cluster (here a LocalCluster we start)."""
    from distributed import LocalCluster

    m = {**SMALL, "experiment": SMALL["experiment"][:1], "seeds": [0]}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        run_dir = harness.run(m, backend="dask", scheduler=cluster.scheduler_address, progress=False)
    assert read_summary(run_dir)["statuses"] == {"ok": 4}
    ref = harness.run(m, run_id="ref", progress=False)
    pd.testing.assert_frame_equal(table(run_dir), table(ref), check_exact=True)


def test_unreachable_scheduler_is_a_clear_error(in_tmp, monkeypatch):
    monkeypatch.setenv("BLOBENCH_DASK_CONNECT_TIMEOUT", "1")
    m = {**SMALL, "experiment": SMALL["experiment"][:1], "seeds": [0]}
    with pytest.raises(harness.BlobenchError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        harness.run(m, backend="dask", scheduler="tcp://127.0.0.1:9", progress=False)
