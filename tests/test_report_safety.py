"""The report writer writes only into a folder it owns, swaps a finished report in atomically, gives a --where
slice its own folder, and never derives a path from user text that leaves the report folder (issue 26)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from blobench.cli import main
from blobench.engine.store import write_manifest, write_shard
from blobench.report import write_report
from blobench.report.write import MARKER
from tests.test_report import _cell, make_run


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_out_refuses_a_folder_it_does_not_own(tmp_path, capsys):
    """`report --out DIR` used to delete every *.png, *.svg and figures.json in DIR (rc 0)."""
    run = make_run(tmp_path, {"error_vs_budget"})
    mine = tmp_path / "paper"
    mine.mkdir()
    for name, data in (("fig1.png", b"\x89PNG mine"), ("fig1.svg", b"<svg/>"), ("figures.json", b"[]"),
                       ("notes.txt", b"n")):
        (mine / name).write_bytes(data)
    before = _files(mine)
    assert main(["report", str(run), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blobench: error: ") and "did not write" in err and err.count("\n") == 1
    assert _files(mine) == before
    # a new folder, and then the same folder again (it is now blobench's: replaced as a whole)
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert (out / MARKER).is_file() and (out / "index.html").is_file()
    (out / "stale.png").write_bytes(b"old figure")
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert not (out / "stale.png").exists() and (out / "report.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]  # no temporary folder left behind


def test_a_report_written_before_the_marker_is_still_owned(tmp_path):
    run = make_run(tmp_path, {"error_vs_budget"})
    old = tmp_path / "reference"
    old.mkdir()
    (old / "report.md").write_text("# blobench report: reference\n")
    (old / "convergence_0.png").write_bytes(b"x")
    write_report(run, out_dir=old)
    assert (old / MARKER).is_file() and not (old / "convergence_0.png").exists()


def test_where_slice_goes_to_its_own_folder(tmp_path):
    """`report --where ...` used to overwrite the run's full report with the slice."""
    run = make_run(tmp_path, {"error_vs_budget", "bias_variance"})
    reports = tmp_path / "reports"
    assert main(["report", str(run), "--reports-dir", str(reports)]) == 0
    full = _files(reports / run.name)
    assert main(["report", str(run), "--reports-dir", str(reports), "--where", "estimator=itd"]) == 0
    assert _files(reports / run.name) == full  # the full report is untouched
    sliced = reports / f"{run.name}--estimator-itd"
    text = (sliced / "report.md").read_text()
    assert "Slice of the run: estimator=itd" in text
    assert "| aid-cg" in (reports / run.name / "report.md").read_text() and "| aid-cg" not in text


def test_an_interrupted_report_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    """SIGINT during `report` used to leave a page pointing to deleted figures: now the new report is built in a
    temporary folder and swapped in only when complete."""
    import blobench.report.base as base

    run = make_run(tmp_path, {"error_vs_budget", "convergence"})
    out = tmp_path / "rep"
    write_report(run, out_dir=out)
    before = _files(out)

    def interrupted(ctx, doc):
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "SECTIONS", [base.Section("boom", 25, interrupted)] + [
        s for s in base.SECTIONS])
    monkeypatch.setattr("blobench.report.write.SECTIONS", sorted(base.SECTIONS, key=lambda s: s.order))
    with pytest.raises(KeyboardInterrupt):
        write_report(run, out_dir=out)
    assert _files(out) == before
    html = (out / "index.html").read_text()
    for img in __import__("re").findall(r'<img src="([^"]+)"', html):
        assert (out / img).is_file(), img
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _complexity_run(root: Path, names: list[str], lower_bound: bool = True) -> Path:
    run = root / "runs" / "cx"
    write_manifest(run, {"matrix_path": "m.toml", "cells": 0, "created": "now", "git_revision": "abc", "versions": {},
                         "machine": {"platform": "test", "cpus": 2}, "devices": {}})
    for i, name in enumerate(names):
        rows = []
        for k in (2.0, 4.0, 8.0):
            base = {"kappa_y": k, "eps": 1e-4}
            rows.append({**base, "quantity": "calls_to_eps", "value": 10 * k ** 2, "upper_bound_order": k ** 2,
                         "reached": 1.0})
            if lower_bound:
                rows.append({**base, "quantity": "lower_bound_calls", "value": 3 * k})
        c = _cell(f"cx{i}", "complexity", "aid-cg", rows)
        c["experiment"] = name
        write_shard(run, f"cx{i}", c)
    return run


def test_experiment_names_cannot_escape_the_report_folder(tmp_path):
    """A complexity experiment named `x/../../escaped` made `report` write figures outside the report folder, and
    a name with `/` crashed it: every file name from user text is slugged, and two that slug alike do not clash."""
    run = _complexity_run(tmp_path, ["x/../../escaped", "a/b", "a-b"])
    out = tmp_path / "deep" / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    outside = [p for p in tmp_path.rglob("*.png") if out not in p.parents]
    assert outside == []
    figs = json.loads((out / "figures.json").read_text())
    names = [f["name"] for f in figs]
    assert len(names) == len(set(names)) == 3
    assert all("/" not in n and ".." not in n for n in names)
    for f in figs:
        assert (out / f["png"]).is_file() and (out / f["svg"]).is_file()


@pytest.mark.parametrize("lower_bound", [True, False])
def test_complexity_caption_promises_a_lower_bound_only_where_one_is_drawn(tmp_path, lower_bound):
    """The stocBiO slice's caption promised a lower bound that was not drawn (a stochastic problem has none)."""
    run = _complexity_run(tmp_path, ["slice"], lower_bound=lower_bound)
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out), "-q"]) == 0
    (fig,) = json.loads((out / "figures.json").read_text())
    assert ("with the lower bound" in fig["caption"]) is lower_bound
    assert ("no lower bound drawn" in fig["caption"]) is not lower_bound


def _compare_pair(tmp_path: Path) -> tuple[Path, Path]:
    from tests.test_results_cli import _changed_copy

    a = make_run(tmp_path, {"error_vs_budget", "bias_variance"})
    return a, _changed_copy(a, tmp_path / "runs" / "synth-b")


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_compare_leaves_the_previous_page_whole(tmp_path, monkeypatch, stop):
    """`compare --out` deleted the old figures first and wrote the new ones in place: SIGINT (or an error) after the
    first figure left a page pointing at figures that were gone. Now it writes through the report's temporary-folder
    swap: the previous page stays byte for byte, and no temporary folder is left behind."""
    import blobench.report.style as style

    a, b = _compare_pair(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    before = _files(out)
    assert (out / MARKER).is_file() and "compare_values.png" in before and "compare_timings.png" in before
    real_save, calls = style.save, []

    def save_then_stop(fig, folder, *args, **kw):
        calls.append(args[0])
        if len(calls) == 2:  # the first figure of the new comparison is written, the second and the page are not
            raise stop("stopped mid-compare")
        return real_save(fig, folder, *args, **kw)

    monkeypatch.setattr(style, "save", save_then_stop)
    # the other way round (B vs A), so that its figures differ from the page already there
    if stop is KeyboardInterrupt:
        assert main(["compare", str(b), str(a), "--out", str(out)]) == 130  # the CLI's Ctrl-C exit
    else:
        from blobench.report.results import compare_runs, write_compare_report

        with pytest.raises(RuntimeError):
            write_compare_report(compare_runs(b, a), out)
    assert calls == ["compare_values", "compare_timings"]
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_compare_out_refuses_a_user_folder_and_replaces_its_own(tmp_path, capsys):
    a, b = _compare_pair(tmp_path)
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "fig1.png").write_bytes(b"my figure")
    (mine / "figures.json").write_text("[]")
    before = _files(mine)
    assert main(["compare", str(a), str(b), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not write" in err
    assert _files(mine) == before
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    (out / "stale.svg").write_text("<svg/>")
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert not (out / "stale.svg").exists() and (out / "index.html").is_file()
    assert "written by blobench compare" in (out / MARKER).read_text()


def _two_experiment_matrix(second: str) -> dict:
    exp = {"problem": "quadratic", "problem_params": {"dim": 3, "kappa": 4}, "estimators": ["itd"],
           "metric": "error_vs_budget", "metric_params": {"budget": "inner_steps", "values": [1, 2]}}
    return {"name": "dup", "seeds": [0], "experiment": [{"name": "first-copy", **exp}, {"name": second, **exp}]}


def test_duplicated_and_renamed_experiments_show_under_their_current_names(tmp_path, capsys):
    """Issue 23: a second experiment with the same cells was dropped from the report, and a renamed experiment kept
    its old label (the shard holds one experiment name); `runs` must not call the shared cells incomplete."""
    from blobench.engine.runner import run as run_matrix
    from blobench.report.results import list_runs

    runs = tmp_path / "runs"
    run_dir = run_matrix(_two_experiment_matrix("second-copy"), runs_dir=runs, progress=False)
    md = write_report(run_dir, out_dir=tmp_path / "r1").read_text()
    assert "first-copy" in md and "second-copy" in md
    row = list_runs(runs).iloc[0]
    assert row["status"] == "complete" and row["cells"] == "1/1"
    # rename the second experiment: no cell reruns (same keys), the report shows the new name only
    run_matrix(_two_experiment_matrix("renamed"), runs_dir=runs, progress=False)
    md = write_report(run_dir, out_dir=tmp_path / "r2").read_text()
    assert "renamed" in md and "second-copy" not in md and "first-copy" in md
    # export, plot and compare read the same names (they read the shard's first name before)
    import pandas as pd
    from blobench.report.results import export

    export(run_dir, "csv", out=str(tmp_path / "rows.csv"))
    assert set(pd.read_csv(tmp_path / "rows.csv")["experiment"]) == {"first-copy", "renamed"}
    q = str(pd.read_csv(tmp_path / "rows.csv")["quantity"].dropna().iloc[0])
    assert main(["plot", str(run_dir), "--y", q, "--x", "budget", "--where", "experiment=renamed",
                 "--out", str(tmp_path / "renamed.svg")]) == 0
    other = run_matrix(_two_experiment_matrix("renamed"), runs_dir=tmp_path / "runs2", progress=False)
    assert main(["compare", str(run_dir), str(other), "--out", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert "renamed" in page and "second-copy" not in page
