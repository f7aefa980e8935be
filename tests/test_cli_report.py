"""`blobench plot`, `run --problem ... --estimators ...`, `--plugin` anywhere, and `report` reading the plugin files
the run recorded (issue 26)."""
from __future__ import annotations

import json


from blobench.cli import hoist_plugins, main
from tests.test_report import VIOLATION_MATRIX, WRONG_MU_PLUGIN, make_run


def test_plot_writes_pdf_svg_png_in_the_report_style(tmp_path, capsys):
    run = make_run(tmp_path, {"convergence", "error_vs_budget"})
    for ext, magic in ((".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"fig{ext}"
        assert main(["plot", str(run), "--x", "calls", "--y", "grad_norm_sq", "--where", "estimator=itd,aid-cg",
                     "--hue", "estimator", "--out", str(out)]) == 0
        assert out.read_bytes().startswith(magic) and out.stat().st_size > 2000
    assert main(["plot", str(run), "--x", "budget", "--y", "error", "--out", str(tmp_path / "e.png")]) == 0
    assert main(["plot", str(run), "--y", "grad_norm_sq", "--hue", "seed", "--out", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    for bad in (["--y", "nope"], ["--y", "grad_norm_sq", "--out", str(tmp_path / "f.jpg")],
                ["--y", "grad_norm_sq", "--x", "nope"], ["--y", "grad_norm_sq", "--hue", "nope"]):
        assert main(["plot", str(run), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("blobench: error: plot") and err.count("\n") == 1, err


def test_run_shortcut_selects_estimators_without_a_toml(tmp_path):
    runs = tmp_path / "runs"
    assert main(["run", "--problem", "quadratic", "--estimators", "aid-cg,itd", "--seeds", "2", "-P", "dim=3",
                 "-m", "outer_steps=3", "-m", "eval_every=1", "--runs-dir", str(runs), "-q"]) == 0
    (run,) = runs.iterdir()
    assert run.name == "quadratic-aid-cg-itd"
    man = json.loads((run / "manifest.json").read_text())
    exp = man["matrix"]["experiment"][0]
    assert exp["estimators"] == ["aid-cg", "itd"] and exp["metric"] == "convergence" and man["matrix"]["seeds"] == [0, 1]
    from blobench import harness

    df = harness.load(run)
    assert sorted(df.drop_duplicates("key")[["estimator", "seed"]].itertuples(index=False, name=None)) == \
        [("aid-cg", 0), ("aid-cg", 1), ("itd", 0), ("itd", 1)]


def test_run_shortcut_bad_use_is_one_line(tmp_path, capsys):
    assert main(["run", "--problem", "quadratic", "--runs-dir", str(tmp_path)]) == 2
    assert main(["run", "m.toml", "--problem", "quadratic", "--estimators", "itd", "--runs-dir", str(tmp_path)]) == 2
    assert main(["run", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("blobench: error: run") for e in err)


def test_plugin_is_accepted_after_the_subcommand_and_report_uses_the_recorded_plugin(tmp_path, monkeypatch):
    assert hoist_plugins(["estimate", "p", "e", "--plugin", "f.py", "-n", "3"]) == \
        ["--plugin", "f.py", "estimate", "p", "e", "-n", "3"]
    assert hoist_plugins(["run", "m", "--plugin=f.py"]) == ["--plugin=f.py", "run", "m"]
    plugin = tmp_path / "wrong_mu.py"
    plugin.write_text(WRONG_MU_PLUGIN)
    (tmp_path / "viol.toml").write_text(VIOLATION_MATRIX)
    runs = tmp_path / "runs"
    assert main(["run", str(tmp_path / "viol.toml"), "--runs-dir", str(runs), "-q", "--plugin", str(plugin)]) == 0
    assert main(["estimate", "quadratic-wrong-mu", "itd", "-n", "3", "--plugin", str(plugin)]) == 0
    # forget the plugin, as a fresh `blobench report` process would not know it
    import blobench.engine.runner as runner
    from blobench.core.registry import PROBLEMS

    monkeypatch.delitem(PROBLEMS._items, "quadratic-wrong-mu")
    monkeypatch.setattr(runner, "_loaded_plugins", {})
    # no --plugin: the manifest's plugin path is imported, so the problem is known and its bound is checked
    assert main(["report", str(runs / "viol"), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "VIOLATION: 0.9 [0.9, 0.9] > predicted 0.8" in text
    # the theory line needs the problem itself (its declared constants): drawn only when the plugin was loaded
    figs = json.loads((tmp_path / "rep" / "figures.json").read_text())
    assert any("theory 0.8" in t for f in figs for t in f["figure_legend"])
    assert "quadratic-wrong-mu" in PROBLEMS._items


def _settings_run(root, name, inner_steps):
    from blobench.engine.store import write_manifest, write_shard
    from tests.test_report import _cell, _convergence_rows

    run = root / "runs" / name
    write_manifest(run, {"matrix_path": f"{name}.toml", "cells": 2, "created": "now", "git_revision": "abc",
                         "versions": {}, "machine": {}, "devices": {}})
    for est, rate in (("itd", 0.8 if inner_steps == 20 else 0.7), ("aid-cg", 0.75)):
        c = _cell(f"{name}-{est}", "convergence", est, _convergence_rows(rate, 0), ep={"inner_steps": inner_steps})
        write_shard(run, f"{name}-{est}", c)
    return run


def test_compare_compares_settings_not_only_identical_cells(tmp_path, capsys):
    """`compare mine mine-k40` (inner_steps 20 vs 40) said "values compared: 0" and drew nothing: cells are now
    aligned by problem, estimator, metric and seed, the differing parameter is named, and paired figures drawn."""
    from blobench.report.results import compare_runs

    a, b = _settings_run(tmp_path, "mine", 20), _settings_run(tmp_path, "mine-k40", 40)
    cmp = compare_runs(a, b)
    assert cmp["rows_compared"] == 0  # no identical cell: the old comparison had nothing
    st = cmp["settings"].set_index("estimator")
    assert set(st.index) == {"itd", "aid-cg"}
    assert st.loc["itd", "differing parameters (A -> B)"] == "inner_steps: 20 -> 40"
    assert st.loc["itd", "rows paired"] == 61  # 20 iterations x 3 quantities, and the diverged flag
    p = cmp["paired"]
    itd = p[(p["estimator"] == "itd") & (p["quantity"] == "grad_norm_sq") & (p["iteration"] == 19)]
    assert len(itd) == 1 and float(itd["value_b"].iloc[0]) < float(itd["value_a"].iloc[0])  # 0.7^19 < 0.8^19
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "settings compared: 2 cell pair(s)" in printed and "inner_steps: 20 -> 40" in printed
    figs = json.loads((out / "figures.json").read_text())
    (f,) = [f for f in figs if f["name"] == "compare_settings_convergence"]
    assert all(ax["lines"] == 4 and ax["points"] > 0 for ax in f["axes"])  # 2 methods x (A, B) per panel


def test_report_shows_progress_and_names_index_html_last(tmp_path, capsys):
    run = make_run(tmp_path, {"error_vs_budget", "convergence"})
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert lines[-1] == str(out / "index.html") and lines[0] == str(out / "report.md")
    assert str(out / "dashboard.html") in lines
    err = cap.err.splitlines()
    assert err[0].startswith("report: synth: ") and any(ln.startswith("report:   convergence: 1 figure(s)") for ln in err)
    assert err[-1].startswith("report: done: ")
    assert main(["report", str(run), "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""
