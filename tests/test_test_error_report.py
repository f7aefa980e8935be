"""The held-out error section (blobench/report/test_error.py, issue 25): benchmark_bilevel's median / 20-80 %
band over seeds on a log grid, and the per-solver table, on a real tiny run (hyper-cleaning on sklearn's shipped
digits: no `make data` needed; it has no test split, so the section draws val_error)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from blobench import harness
from blobench.cli import main
from blobench.report.test_error import median_band

pytest.importorskip("sklearn")


def test_median_band_is_the_quantiles_of_log_interpolated_curves():
    a = (np.array([1.0, 100.0]), np.array([0.5, 0.1]))
    b = (np.array([1.0, 10.0, 100.0]), np.array([0.7, 0.6, 0.3]))
    grid, med, lo, hi = median_band([a, b], n=3)
    np.testing.assert_allclose(grid, [1.0, 10.0, 100.0])
    ya = np.array([0.5, 0.3, 0.1])  # a at x = 10: halfway in log x
    yb = np.array([0.7, 0.6, 0.3])
    np.testing.assert_allclose(med, (ya + yb) / 2)
    np.testing.assert_allclose(lo, ya + 0.2 * (yb - ya))
    np.testing.assert_allclose(hi, ya + 0.8 * (yb - ya))


def test_section_on_a_real_run(in_tmp, monkeypatch):
    from blobench.report import style

    seen: dict[str, set] = {}
    save = style.save

    def recording_save(fig, *a, **k):  # every method's (colour, line style, marker) in every figure of the report
        for ax in fig.axes:
            for ln in ax.lines:
                est = str(ln.get_label()).split("(")[0].split(" ")[0]
                if est in ("soba", "stocbio"):
                    seen.setdefault(est, set()).add((str(ln.get_color()), ln.get_linestyle(), ln.get_marker()))
        return save(fig, *a, **k)

    monkeypatch.setattr(style, "save", recording_save)
    m = in_tmp / "t.toml"
    m.write_text(textwrap.dedent("""
        name = "heldout"
        seeds = [0, 1]
        [[experiment]]
        name = "digits-cleaning"
        problem = "hyper-cleaning"
        problem_params = { data = "digits", n_train = 60, n_val = 60, classes = 3, stochastic = true }
        estimators = ["soba", "stocbio"]
        estimator_params = { batch_size = 8 }
        per_estimator = { "stocbio" = { inner_steps = 3, solver_steps = 3 } }
        metric = "convergence"
        metric_params = { outer_steps = 12, eval_every = 4, outer_lr = 5.0 }
    """))
    assert main(["run", str(m), "-q"]) == 0
    assert main(["report", "heldout"]) == 0
    text = (in_tmp / "reports" / "heldout" / "report.md").read_text()
    assert "Held-out error against time and oracle calls (val_error)" in text
    assert (in_tmp / "reports" / "heldout" / "test_error_0.png").is_file()
    # issue 26: one method keeps one style in every figure, the held-out section's included
    assert set(seen) == {"soba", "stocbio"} and all(len(v) == 1 for v in seen.values()), seen
    df = harness.load(in_tmp / "runs" / "heldout")
    v = df[df["quantity"] == "val_error"]
    assert set(v["estimator"]) == {"soba", "stocbio"} and v["value"].between(0, 1).all()
    for est in ("soba", "stocbio"):
        last = v[(v["estimator"] == est) & (v["iteration"] == 12)]["value"]
        assert len(last) == 2
        row = next(line for line in text.splitlines() if line.startswith(f"| {est}"))
        final = float(row.split("|")[2])
        assert final == pytest.approx(float(np.median(last)), abs=1e-4)


def test_to_level_columns_count_the_settling_point_not_the_first_dip():
    """Issue 26's rule for every "to eps" column: a solver whose error dips under the level and leaves it again has
    not reached it (it showed the dip's seconds before); one that stays under it gets the first point from which it
    stays, and "not reached" replaces nan."""
    import pandas as pd

    from blobench.report.test_error import LEVEL_MARGIN, summary_table

    errs = {"steady": [0.5, 0.3, 0.2, 0.10, 0.10], "dips": [0.5, 0.09, 0.4, 0.3, 0.3], "never": [0.5] * 5}
    rows = [{"estimator_label": e, "iteration": i, "value": v, "seconds_elapsed": float(i), "calls_total": 10.0 * i,
             "seed": 0, "key": e, "cell_seconds": 1.0} for e, vs in errs.items() for i, v in enumerate(vs)]
    grad = pd.DataFrame([{"estimator_label": e, "iteration": 4, "seed": 0, "value": 1e-3} for e in errs])
    t, level = summary_table(pd.DataFrame(rows), grad, "test_error")
    assert level == 0.10 + LEVEL_MARGIN
    t = t.set_index("solver")
    assert t.loc["steady", "seconds to level"] == 3.0 and t.loc["steady", "calls to level"] == 30.0
    assert t.loc["dips", "seconds to level"] == "not reached" and t.loc["never", "calls to level"] == "not reached"
