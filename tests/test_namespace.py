"""One import namespace: blobench owns exactly one top-level name, and a user's folders cannot shadow it.

Before the move, a notebook folder with its own ``problems/`` made ``harness.problem("quadratic")`` fail
("known: none") and a local ``estimators/`` hid 8 of 28 estimators: the harness discovered its plugins as
top-level packages, so whatever the working directory held won.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COUNT = ("import json; from blobench import harness; "
         "print(json.dumps([len(harness.problems()), len(harness.estimators()), len(harness.claims()), "
         "harness.problem('quadratic').dim_x]))")


def _counts(cwd: Path, python: str = sys.executable, env: dict | None = None) -> list[int]:
    r = subprocess.run([python, "-c", COUNT], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_hostile_working_directory_changes_nothing(tmp_path):
    """A folder with its own problems/, estimators/, claims/ and harness.py (``python -c`` puts it first on
    sys.path) sees the same problems, estimators and claims as the repository root."""
    reference = _counts(ROOT)
    for pkg in ("problems", "estimators", "claims"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        (tmp_path / pkg / "mine.py").write_text("raise RuntimeError('a user module, not blobench')\n")
    (tmp_path / "harness.py").write_text("raise RuntimeError('a user module, not blobench')\n")
    assert _counts(tmp_path) == reference
    assert reference[1] >= 28 and reference[2] >= 43
    r = subprocess.run([sys.executable, "-m", "blobench", "list", "estimators"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "BLOBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0 and len(r.stdout.splitlines()) == reference[1] + 1, r.stderr


def test_old_import_names_get_one_line_saying_what_to_write(tmp_path):
    plugin = tmp_path / "old.py"
    plugin.write_text("import harness\nfrom harness.numerics import neumann\n")
    r = subprocess.run([sys.executable, "-m", "blobench", "--plugin", str(plugin), "list"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "from blobench import harness" in line, line
    assert "harness.numerics -> blobench.core.numerics" in line, line
    plugin.write_text("from problems.quadratic import Quadratic\n")
    r = subprocess.run([sys.executable, "-m", "blobench", "--plugin", str(plugin), "list"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "problems.quadratic -> blobench.problems.quadratic" in r.stderr, r.stderr


def test_renames_cover_every_old_module():
    """Every module of the old layout (the 0.1 wheel's harness/, problems/, estimators/, claims/) has a new
    name, and that name imports."""
    import importlib

    from blobench.core.renames import RENAMED, new_name

    for old, new in RENAMED.items():
        if old.endswith("__main__"):
            continue
        importlib.import_module(new)
    assert new_name("harness.report.style") == "blobench.report.style"
    assert new_name("numpy") is None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the package's sources as they are now, built from a copy: setuptools reuses the checkout's
    ``build/lib`` and keeps modules deleted since the last build (a renamed claims module then registered its
    claims twice in the installed wheel)."""
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "blobench", src / "blobench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,) = out.glob("blobench-*.whl")
    return whl


def test_the_wheel_holds_only_the_blobench_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
        names = set(z.namelist())
    assert tops == {"blobench", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    assert "blobench/claims/anil_evidence.json" in names and "blobench/py.typed" in names


def test_the_wheel_installed_in_a_fresh_venv_runs_the_smoke_matrix(wheel, tmp_path):
    """``pip install`` of the wheel into a new venv (its dependencies taken from this environment's
    site-packages through PYTHONPATH, where no ``blobench`` folder exists: the editable install's finder is
    not loaded from PYTHONPATH), then ``blobench run matrices/smoke.toml`` from a folder outside the checkout."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a checkout on it looks "installed"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300, env=clean)
    assert r.returncode == 0, r.stderr[-2000:]
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site), "BLOBENCH_CACHE_DIR": str(tmp_path / "cache")}
    work = tmp_path / "work"
    work.mkdir()
    (work / "smoke.toml").write_text((ROOT / "matrices" / "smoke.toml").read_text())
    r = subprocess.run([str(py), "-c", "import blobench, sys; print(blobench.__file__)"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and str(env_dir) in r.stdout, (r.stdout, r.stderr)
    r = subprocess.run([str(env_dir / "bin" / "blobench"), "run", "smoke.toml", "-q"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert any((work / "runs" / "smoke" / "shards").glob("*.parquet")) or any((work / "runs").rglob("*.parquet"))
