"""Results one can work with (issue 16): export, compare, runs and --where on small (synthetic) runs."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from blobench import harness
from blobench.cli import main
from blobench.core.errors import BlobenchError
from blobench.report.results import apply_where, compare_runs, list_runs
from blobench.engine.store import read_manifest, write_manifest, write_shard
from tests.test_report import ALL, make_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path, {"bias_variance", "error_vs_budget"})


def test_where_on_columns_and_parameters(run_dir):
    df = harness.load(run_dir)
    assert set(apply_where(df, ["estimator=aid-cg"])["estimator"]) == {"aid-cg"}
    assert set(apply_where(df, ["estimator=aid-cg,fo"])["estimator"]) == {"aid-cg", "fo"}
    assert "itd" not in set(apply_where(df, ["estimator!=itd"])["estimator"])
    # parameter names inside estimator_params: batch_size is 1, 4 or 16 on the bias_variance cells
    bs = apply_where(df, ["batch_size>=4", "quantity=bias_norm"])
    assert sorted(json.loads(p)["batch_size"] for p in bs["estimator_params"]) == [4, 4, 16, 16]
    assert len(apply_where(df, {"batch_size": 4, "estimator": "itd", "quantity": "bias_norm"})) == 1
    assert len(apply_where(df, ["seed=0"])) == len(df)  # numbers compare as numbers
    with pytest.raises(BlobenchError, match="unknown key 'nope'"):
        apply_where(df, ["nope=1"])
    with pytest.raises(BlobenchError, match="KEY=VALUE"):
        apply_where(df, ["estimator"])


def test_export_csv_json_parquet_with_where(run_dir, tmp_path, capsys):
    df = harness.load(run_dir)
    want = df[(df["estimator"] == "itd") & (df["metric"] == "bias_variance")]
    assert main(["export", str(run_dir), "--where", "estimator=itd", "--where", "metric=bias_variance"]) == 0
    got = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(got) == len(want) > 0 and set(got["estimator"]) == {"itd"}
    assert main(["export", str(run_dir), "-f", "json", "-w", "quantity=bias_norm"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == int((df["quantity"] == "bias_norm").sum()) and {r["quantity"] for r in recs} == {"bias_norm"}
    out = tmp_path / "x" / "rows.parquet"
    assert main(["export", str(run_dir), "-f", "parquet", "-o", str(out)]) == 0
    back = pd.read_parquet(out)
    assert len(back) == len(df) and list(back.columns) == list(df.columns)
    # bad input: one line, exit 2
    assert main(["export", str(run_dir), "-f", "parquet"]) == 2
    assert main(["export", str(run_dir), "--where", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("blobench: error:") == 2 and "Traceback" not in err


def _changed_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of run_dir with one value, one status and one timing changed, and a new code revision."""
    shutil.copytree(run_dir, dest)
    man = read_manifest(dest)
    write_manifest(dest, {**man, "git_revision": "def456"})
    shard = dest / "cells" / "bv-itd-4.parquet"
    d = pd.read_parquet(shard)
    d.loc[d["quantity"] == "variance_trace", "value"] *= 2.0
    d["cell_seconds"] = 0.4
    write_shard(dest, "bv-itd-4", d)
    shard = dest / "cells" / "bv-aid-cg-16.parquet"
    d = pd.read_parquet(shard)
    d["status"] = "failed"
    write_shard(dest, "bv-aid-cg-16", d)
    (dest / "cells" / "evb-fo.parquet").unlink()
    (dest / "statuses.jsonl").unlink(missing_ok=True)
    return dest


def test_compare_finds_exactly_what_changed(run_dir, tmp_path, capsys):
    b = _changed_copy(run_dir, tmp_path / "runs" / "synth-b")
    cmp = compare_runs(run_dir, b)
    v = cmp["values"]
    assert len(v) == 1 and v["quantity"].iloc[0] == "variance_trace" and v["rel_change"].iloc[0] == pytest.approx(1.0)
    st = cmp["statuses"]
    assert len(st) == 1 and (st["status_a"].iloc[0], st["status_b"].iloc[0]) == ("ok", "failed")
    assert len(cmp["only_a"]) == 1 and cmp["only_a"]["estimator"].iloc[0] == "fo" and cmp["only_b"].empty
    t = cmp["timings"].set_index(["estimator", "estimator_params"])
    assert t.loc[("itd", '{"batch_size": 4}'), "ratio_b_over_a"] == pytest.approx(4.0)
    man = cmp["manifests"].set_index("field")
    assert man.loc["git_revision", "A"] == "abc" and man.loc["git_revision", "B"] == "def456"
    assert bool(man.loc["git_revision", "changed"])
    # negative control: a run compared with itself changes nothing
    same = compare_runs(run_dir, run_dir)
    assert same["values"].empty and same["statuses"].empty and same["only_a"].empty and same["rows_compared"] > 0
    # the CLI prints the tables and writes a page with figures (PNG + SVG)
    out = tmp_path / "cmp"
    assert main(["compare", str(run_dir), str(b), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "code revision: abc -> def456" in text and "changed beyond rtol 1e-09: 1" in text
    assert "variance_trace" in text and "failed" in text
    page = (out / "index.html").read_text()
    for stem in ("compare_values", "compare_timings"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.svg").is_file() and f"{stem}.png" in page
    assert main(["compare", str(run_dir), str(tmp_path / "nowhere")]) == 2
    # a second compare into its own folder replaces it; a user's folder with figures is refused, nothing deleted
    assert main(["compare", str(run_dir), str(b), "--out", str(out)]) == 0
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "fig1.png").write_bytes(b"my figure")
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(b), "--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "did not write" in err
    assert (mine / "fig1.png").read_bytes() == b"my figure"


def test_runs_lists_folders_with_status(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(tmp_path, {"bias_variance"}, name="partial")  # make_run adds one failed cell
    ok = make_run(tmp_path, {"odd_metric"}, name="good")
    (ok / "cells" / "bad.parquet").unlink()  # drop its failed cell: all ok
    write_manifest(ok, {**read_manifest(ok), "cells": 1})
    inc = make_run(tmp_path, {"odd_metric"}, name="unfinished")
    write_manifest(inc, {**read_manifest(inc), "cells": 10})
    t = list_runs(runs).set_index("run")
    assert t.loc["partial", "status"] == "partial" and "failed 1" in t.loc["partial", "by status"]
    assert t.loc["good", "status"] == "complete" and t.loc["good", "cells"] == "1/1"
    assert t.loc["unfinished", "status"] == "incomplete" and t.loc["unfinished", "cells"] == "2/10"
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| good | complete | 1/1 |" in out and "| unfinished | incomplete | 2/10 |" in out
    assert main(["runs", "--runs-dir", str(tmp_path / "none")]) == 0
    assert "no run folders" in capsys.readouterr().out


def test_report_where_reports_a_slice(tmp_path):
    run_dir = make_run(tmp_path, ALL)
    out = tmp_path / "slice"
    assert main(["report", str(run_dir), "--out", str(out), "--where", "metric=bias_variance",
                 "--where", "estimator=itd"]) == 0
    text = (out / "report.md").read_text()
    assert "# blobench report: synth [metric=bias_variance and estimator=itd]" in text
    assert "Bias and variance" in text and "Error versus budget" not in text and "Outer-loop convergence" not in text
    assert "| aid-cg" not in text


def test_cli_version_help_and_broken_pipe():
    env_py = [sys.executable, "-m", "blobench"]
    v = subprocess.run(env_py + ["--version"], capture_output=True, text=True, cwd=ROOT)
    assert v.returncode == 0 and v.stdout.strip() == f"blobench {harness.__version__}"
    # a reader that leaves early (`blobench list | head -1`) gets no traceback
    p = subprocess.run(" ".join(env_py) + " list | head -1", shell=True, capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.strip() == "problems:" and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    # every positional and option of every subcommand has a help text
    from blobench.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{name}: {act.dest}" for name, sp in sub.choices.items() for act in sp._actions
               if act.dest != "help" and not act.help]
    assert not missing, missing


def test_estimate_prints_resolved_parameters(capsys):
    assert main(["estimate", "quadratic", "itd", "-n", "20", "-P", "dim=3"]) == 0
    out = capsys.readouterr().out
    est = [ln for ln in out.splitlines() if ln.startswith("estimator")][0]
    assert "inner_steps=10" in est and "inner_lr=0.1" in est and "None" not in est
    bias = [ln for ln in out.splitlines() if ln.startswith("bias_norm ")][0].split()[1]
    assert len(bias.replace(".", "").replace("-", "").lstrip("0")) <= 4  # 4 significant digits, not 17


def test_profiler_prints_no_usdt_lines():
    """`make run` output stays clean: kineto's "USDT ... profiler_start/stop" lines (printed from C++ to fd 2 on
    every profiler start and stop) are silenced around the CPU memory measurement, while the measured call's own
    stderr still gets through."""
    code = ("import sys, torch\nfrom blobench.measure.memory import _cpu_peak\n"
            "def f():\n    sys.stderr.write('from the call\\n'); sys.stderr.flush()\n    return torch.ones(100) * 2\n"
            "print(_cpu_peak(f, (), {})[1])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and int(p.stdout.strip()) > 0, p.stderr
    assert "USDT" not in p.stderr and "profiler_start" not in p.stderr, p.stderr
    assert "from the call" in p.stderr
