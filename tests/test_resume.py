"""Crash safety: resume after SIGKILL, the run-folder lock, caching by plugin source."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from blobench import harness
from blobench.engine.runner import read_summary
from blobench.engine.store import RunLock, RunLockedError, finished_keys

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import write_plugin  # noqa: E402


def table(run_dir) -> pd.DataFrame:
    """A run's rows without the wall-clock column, in a canonical order."""
    df = harness.load(run_dir).drop(columns=["cell_seconds"])
    return df.sort_values(["key", "quantity", "budget"], na_position="first").reset_index(drop=True)


KILL_MATRIX = textwrap.dedent('''
    name = "killme"
    seeds = [0, 1, 2, 3, 4, 5]
    [[experiment]]
    name = "slow"
    problem = "quadratic"
    problem_params = { dim = 3, kappa = 10 }
    estimator = "test-slow-exact"
    metric = "error_vs_budget"
    metric_params = { budget = "inner_steps", values = [1, 2] }

    [[experiment]]
    name = "itd"
    seeds = [0]
    problem = "quadratic"
    problem_params = { dim = 3, kappa = [10, 100] }
    estimators = ["itd", "aid-cg"]
    metric = "error_vs_budget"
    metric_params = { budget = "inner_steps", values = [1, 4, 16] }
''')


def test_resume_after_sigkill_equals_uninterrupted_run(in_tmp):
    plugin = write_plugin(in_tmp)
    (in_tmp / "m.toml").write_text(KILL_MATRIX)
    cmd = [sys.executable, "-m", "blobench", "--plugin", plugin, "run", "m.toml", "--runs-dir", "killed", "-q"]
    proc = subprocess.Popen(cmd, cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cells = in_tmp / "killed" / "killme"
    deadline = time.monotonic() + 60
    while len(finished_keys(cells)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(finished_keys(cells))
    assert proc.returncode == -signal.SIGKILL and 2 <= n_before < 10, (n_before, proc.stderr.read())
    # a torn temporary (as a kill during a write leaves) is neither read nor kept
    (cells / "cells" / ".tmp-torn.parquet").write_bytes(b"PAR1 torn")
    assert len(harness.load(cells)["key"].unique()) == n_before
    # resume: the stale lock of the killed process does not block, only missing cells run
    resumed = harness.run("m.toml", runs_dir="killed", plugins=[plugin], progress=False)
    s = read_summary(resumed)
    assert s["skipped"] == n_before and s["ran"] == 10 - n_before and not s["partial"]
    assert not list((cells / "cells").glob(".tmp-*"))
    fresh = harness.run("m.toml", runs_dir="fresh", plugins=[plugin], progress=False)
    a, b = table(resumed), table(fresh)
    assert len(a) == len(b) and a["key"].nunique() == 10 and not a.duplicated(["key", "quantity", "budget"]).any()
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_second_writer_is_refused_with_a_clear_message(in_tmp, capsys):
    from blobench.cli import main

    (in_tmp / "m.toml").write_text(KILL_MATRIX.replace('"test-slow-exact"', '"itd"'))
    with RunLock(in_tmp / "runs" / "killme"):
        with pytest.raises(RunLockedError, match=f"being written by another blobench process \\(pid {os.getpid()}\\)"):
            harness.run("m.toml", progress=False)
        assert main(["run", "m.toml", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("blobench: error: run folder") and "--run-id" in err[0]
    # control: once the holder lets go, the same run goes through
    assert harness.run("m.toml", progress=False).is_dir()


def test_lock_of_a_killed_process_does_not_block(in_tmp):
    folder = in_tmp / "runs" / "x"
    code = f"from blobench.engine.store import RunLock; RunLock({str(folder)!r}).acquire(); import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    lock = folder / ".lock"
    deadline = time.monotonic() + 30
    while not (lock.is_file() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            RunLock(folder).acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    RunLock(folder).acquire().release()  # the kernel dropped the dead holder's flock


def test_rerun_recomputes_nothing_and_editing_one_estimator_file_recomputes_only_its_cells(in_tmp):
    src = "from blobench import harness\n\n@harness.register_estimator({name!r})\nclass E(harness.Estimator):\n" \
          "    params = {{}}\n\n    def estimate(self, oracles, x, noise, state=None):\n" \
          "        return harness.Estimate(oracles.exact(x))\n"
    pa, pb = in_tmp / "plug_a.py", in_tmp / "plug_b.py"
    pa.write_text(src.format(name="test-cache-a"))
    pb.write_text(src.format(name="test-cache-b"))
    m = {"name": "cache", "seeds": [0, 1], "experiment": [{
        "problem": "quadratic", "problem_params": {"dim": 3, "kappa": 10}, "estimators": ["test-cache-a", "test-cache-b"],
        "metric": "bias_variance", "metric_params": {"samples": 20}}]}
    plugins = [str(pa), str(pb)]
    first = harness.run(m, plugins=plugins, progress=False)
    assert read_summary(first)["ran"] == 4
    t0 = time.perf_counter()
    harness.run(m, plugins=plugins, progress=False)
    assert read_summary(first)["ran"] == 0 and time.perf_counter() - t0 < 10
    pb.write_text(pb.read_text() + "# an edit\n")
    harness.run(m, plugins=plugins, progress=False)
    s = read_summary(first)
    assert s["ran"] == 2 and s["skipped"] == 2
    # the old b shards stay on disk under their old keys but are not part of the table
    df = harness.load(first)
    assert df["key"].nunique() == 4 and set(df.estimator) == {"test-cache-a", "test-cache-b"}
    assert harness.load(first, stale=True)["key"].nunique() == 6


def test_cell_key_follows_sibling_plugin_imports(tmp_path):
    """A plugin that imports helpers from a sibling plugin module (digits-fewshot from blobench/problems/sinusoid.py)
    gets a new cell key when only the helper file changes; harness and third-party imports are not followed."""
    from blobench.engine.matrix import plugin_sources
    from blobench.core.registry import plugin_file

    harness.discover()
    srcs = [Path(s).name for s in plugin_sources(plugin_file("problem", "digits-fewshot"))]
    assert srcs == ["digits_fewshot.py", "sinusoid.py"]
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "helper.py").write_text("import torch\nfrom blobench import harness\nX = 1\n")
    (pkg / "deep.py").write_text("from mypkg.helper import X\n")
    (pkg / "plug.py").write_text("import numpy\nfrom mypkg.deep import X\nfrom blobench.core.params import Param\n")
    assert sorted(Path(s).name for s in plugin_sources(str(pkg / "plug.py"))) == ["deep.py", "helper.py", "plug.py"]
