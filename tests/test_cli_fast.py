"""A fast command line (issue 13 item 5): ``--help``, ``list`` and ``describe`` import neither torch nor the
plugins; ``list`` and ``describe`` read a catalog cached under a fingerprint of the plugin files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blobench import harness
from blobench.cli import main
from blobench.core.registry import CLAIMS, ESTIMATORS, METRICS, PROBLEMS, _cache_path, _fingerprint, catalog, describe_text

PROBE = ("import atexit, sys; atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', "
         "file=sys.stderr)); from blobench.cli import main; sys.exit(main(sys.argv[1:]))")


def _cli(args, cache):
    env = {**os.environ, "BLOBENCH_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=300)


def test_help_list_and_describe_do_not_import_torch(tmp_path):
    first = _cli(["list"], tmp_path)  # builds the catalog (imports everything once)
    assert first.returncode == 0 and "TORCH" in first.stderr
    for args in (["list"], ["list", "estimators"], ["describe", "aid-cg"], ["describe", "ufo-unbiased"]):
        r = _cli(args, tmp_path)
        assert r.returncode == 0 and r.stderr.strip() == "NO-TORCH", (args, r.stderr)
    r = _cli(["--help"], tmp_path / "empty")
    assert r.returncode == 0 and "NO-TORCH" in r.stderr and not (tmp_path / "empty").exists()
    assert first.stdout == _cli(["list"], tmp_path).stdout


def test_cached_catalog_says_what_the_live_registries_say(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BLOBENCH_CACHE_DIR", str(tmp_path))
    harness.discover()
    cat = catalog()
    assert _cache_path().is_file() and _cache_path().parent == tmp_path
    for kind, reg in (("problem", PROBLEMS), ("estimator", ESTIMATORS), ("metric", METRICS), ("claim", CLAIMS)):
        assert list(cat[kind]) == reg.names()
        for n in reg.names():
            assert cat[kind][n] == describe_text(kind, n, reg.get(n))
    assert main(["list", "problems"]) == 0
    assert capsys.readouterr().out.split() == ["problems:", *PROBLEMS.names()]
    assert main(["describe", "aid-cg"]) == 0
    assert capsys.readouterr().out.strip() == describe_text("estimator", "aid-cg", ESTIMATORS.get("aid-cg"))
    assert main(["describe", "no-such-thing"]) == 2


def test_editing_a_plugin_file_invalidates_the_catalog(tmp_path, monkeypatch):
    """(Planted: a fingerprint that ignores the plugin files serves a stale catalog: this test fails.)"""
    import blobench.problems.quadratic as q

    before = _fingerprint()
    path = Path(q.__file__)
    st = path.stat()
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert _fingerprint() != before
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _fingerprint() == before


def test_plugin_files_are_listed_live(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BLOBENCH_CACHE_DIR", str(tmp_path))
    f = tmp_path / "plug.py"
    f.write_text("from blobench import harness\n\n@harness.register_estimator('cli-fast-plugin')\nclass E(harness.Estimator):\n"
                 "    params = {}\n\n    def estimate(self, oracles, x, noise, state=None):\n"
                 "        return harness.Estimate(oracles.exact(x))\n")
    assert main(["--plugin", str(f), "list", "estimators"]) == 0
    assert "cli-fast-plugin" in capsys.readouterr().out.split()


@pytest.mark.parametrize("bad", ["unwritable"])
def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch, capsys, bad):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("BLOBENCH_CACHE_DIR", str(tmp_path / "file" / "sub"))  # cannot be created
    assert main(["list", "metrics"]) == 0
    assert "bias_variance" in capsys.readouterr().out


def test_registry_imports_no_module_that_registers_into_it():
    """Issue 16: no import circle registry <-> measures/outer. The registry imports only blobench.core.errors at
    module level and never names measures, outer or a plugin package; blobench.engine.discovery imports them all.
    (Planted: discover() importing blobench.measure.metrics again, as before: this test fails.)"""
    import ast

    import blobench.core.registry as reg

    src = Path(reg.__file__).read_text()
    tree = ast.parse(src)
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    local = {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module.startswith("blobench")}
    assert local == {"blobench.core.errors"}, local
    every = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for banned in ("blobench.measure.metrics", "blobench.measure.outer", "blobench.problems", "blobench.estimators"):
        assert banned not in every and banned not in strings, banned
    # and discovery registers the built-in metrics through the modules that define them
    import blobench.engine.discovery as disc

    assert {"metrics", "outer", "complexity"} <= {a.name for n in ast.parse(Path(disc.__file__).read_text()).body
                                     if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(harness.metrics()) >= {"bias_variance", "error_vs_budget", "convergence"}
