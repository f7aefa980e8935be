"""Issue 23's audit of every clock read under blobench/claims, blobench/gate and blobench/measure: which decision, if
any, depends on time. A new clock read fails this test until it is classified here (and, if a claim decides on it,
made robust to load and given its load test, as ufo-expected-cost's is: ``python -m blobench.claims.ufo_blo --load-test``)."""
from __future__ import annotations

import re
from pathlib import Path

import blobench

ROOT = Path(blobench.__file__).parent
CLOCK = re.compile(r"\b(?:time\.)?(?:perf_counter|process_time|thread_time|monotonic)(?:_ns)?\(|\btime\.time(?:_ns)?\(")

#: file -> what its clock reads decide
AUDIT = {
    "claims/ufo_blo.py": "ufo-expected-cost decides on CPU seconds (c against half a grad_y_g call): per-piece minima "
                         "over interleaved rounds, pieces cut at every oracle call (load test: --load-test); "
                         "batched_speedup only reports",
    "gate/claim_base.py": "records a claim's run time (report column); no decision",
    "gate/mutations.py": "records a mutation's run time (printed); no decision",
    "gate/verify/__init__.py": "records the battery's run time; no decision",
    "gate/verify/common.py": "records a check's run time; no decision",
    "gate/verify/conformance.py": "records time per name in the matrix document; no decision",
    "gate/verify/battery_estimator.py": "records a check's run time; no decision",
    "measure/sampling.py": "EstimateBatch.seconds, reported; no claim reads it",
    "measure/outer.py": "Trace.seconds (seconds_elapsed rows, plots); no claim reads it",
    "measure/timing.py": "time_call (the 'seconds' metric rows, reported); no claim reads it",
}


def _clock_files() -> set[str]:
    out = set()
    for sub in ("claims", "gate", "measure"):
        for f in (ROOT / sub).rglob("*.py"):
            if CLOCK.search(f.read_text(encoding="utf-8")):
                out.add(f.relative_to(ROOT).as_posix())
    return out


def test_every_clock_read_is_audited():
    found = _clock_files()
    assert found == set(AUDIT), (f"unaudited clock reads: {sorted(found - set(AUDIT))}; "
                                 f"audited files that no longer read a clock: {sorted(set(AUDIT) - found)}")


def test_only_ufo_expected_cost_decides_on_time():
    """No claims module but ufo_blo reads a clock, and none reads the timing outputs of blobench.measure (EstimateBatch
    .seconds, Trace.seconds / seconds_elapsed, time_call, the 'seconds' metrics)."""
    uses = re.compile(r"\.seconds\b|seconds_elapsed|time_call|seconds_median")
    for f in sorted((ROOT / "claims").rglob("*.py")):
        rel = f.relative_to(ROOT).as_posix()
        text = f.read_text(encoding="utf-8")
        assert rel == "claims/ufo_blo.py" or not CLOCK.search(text), rel
        assert not uses.search(text), (rel, uses.search(text).group(0))
