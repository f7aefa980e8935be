"""The blobench pytest plugin used by the project's own tests: one test per (estimator, property, problem)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from blobench.gate.pytest_plugin import parametrize_with_checks


@parametrize_with_checks(["itd"], problems=["kappa-hard"])
def test_itd_conforms(check):
    check()


def test_a_user_file_of_three_lines_catches_a_planted_bug(tmp_path):
    """A user's test file (three lines) on a plugin with a planted bug: its rate test fails, the generic ones pass."""
    plug = os.path.join(os.path.dirname(__file__), "verify_plugins")
    for f in ("good_neumann.py", "bad_rate.py"):
        (tmp_path / f).write_text(open(os.path.join(plug, f)).read())
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""\
        from blobench.gate.pytest_plugin import parametrize_with_checks
        @parametrize_with_checks(["vp-bad-rate"], plugin="bad_rate.py", problems=["kappa-hard"])
        def test_blobench(check): check()
        """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "test_mine.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout[-2000:]
    assert "FAILED test_mine.py::test_blobench[vp-bad-rate-rate[solver_steps]-kappa-hard]" in r.stdout, r.stdout[-2000:]
    # the halved step also slows the inner_steps sweep, whose solver_steps are held where the DECLARED rate reaches 1e-14
    assert " failed" in r.stdout and " passed" in r.stdout
