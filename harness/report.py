"""Reports: reports/<run-id>/report.md with summary tables and seaborn figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .store import load, read_manifest, resolve_run


def _palette(names: list[str]) -> dict[str, tuple]:
    import seaborn as sns

    names = sorted(set(names))
    colors = sns.color_palette("tab10", max(len(names), 1))
    return {n: colors[i % len(colors)] for i, n in enumerate(names)}


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    out = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v))
        out += "| " + " | ".join(cells) + " |\n"
    return out


def _label(row) -> str:
    pp = json.loads(row["problem_params"]) if isinstance(row["problem_params"], str) else {}
    ep = json.loads(row["estimator_params"]) if isinstance(row["estimator_params"], str) else {}
    p = row["problem"] + ("(" + ",".join(f"{k}={v}" for k, v in pp.items()) + ")" if pp else "")
    e = row["estimator"] + ("(" + ",".join(f"{k}={v}" for k, v in ep.items()) + ")" if ep else "")
    return p, e


def error_budget_figure(df: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    d = df[(df["metric"] == "error_vs_budget") & (df["quantity"] == "error") & (df["status"] == "ok")].copy()
    if d.empty:
        return None
    d["problem_label"] = d.apply(lambda r: _label(r)[0], axis=1)
    d["budget"] = d["budget"].astype(float)
    d["value"] = d["value"].astype(float).clip(lower=1e-16)
    panels = sorted(d["problem_label"].unique())
    pal = _palette(list(d["estimator"].unique()))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, pl in zip(axes[0], panels):
        sub = d[d["problem_label"] == pl]
        sns.lineplot(data=sub, x="budget", y="value", hue="estimator", style="budget_param", marker="o",
                     palette=pal, ax=ax, errorbar=None)
        ax.set_yscale("log")
        ax.set_xlabel("budget (iterations of the swept parameter)")
        ax.set_ylabel("||estimate - grad Phi||  (log scale)")
        ax.set_title(pl, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    ok = df[df["status"] == "ok"]
    bv = ok[ok["metric"] == "bias_variance"]
    if not bv.empty:
        piv = bv[bv["quantity"].isin(["bias_norm", "variance_trace", "mse", "unbiased_p_holm", "samples"])]
        t = piv.pivot_table(index=["problem", "problem_params", "estimator", "estimator_params", "seed"],
                            columns="quantity", values="value", aggfunc="first").reset_index()
        t["problem"] = t.apply(lambda r: _label(r)[0], axis=1)
        t["estimator"] = t.apply(lambda r: _label(r)[1], axis=1)
        out["bias_variance"] = t.drop(columns=["problem_params", "estimator_params"])
    ev = ok[(ok["metric"] == "error_vs_budget") & (ok["quantity"] == "fitted_rate")]
    if not ev.empty:
        t = ev[["problem", "problem_params", "estimator", "estimator_params", "budget_param", "seed", "value"]].copy()
        t["problem"] = t.apply(lambda r: _label(r)[0], axis=1)
        t["estimator"] = t.apply(lambda r: _label(r)[1], axis=1)
        out["error_vs_budget"] = t.drop(columns=["problem_params", "estimator_params"]).rename(columns={"value": "fitted_rate"})
    return out


def write_report(run: str | Path, out_root: str | Path = "reports") -> Path:
    """Write reports/<run-id>/report.md (and its figures); returns the report.md path."""
    run_dir = resolve_run(run)
    man = read_manifest(run_dir)
    df = load(run_dir)
    out = Path(out_root) / run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# blobench report: {run_dir.name}", ""]
    lines += [f"- matrix: `{man.get('matrix_path')}` ({man.get('cells')} cells)",
              f"- created: {man.get('created')}", f"- git revision: `{man.get('git_revision')}`",
              f"- versions: {', '.join(f'{k} {v}' for k, v in man.get('versions', {}).items())}",
              f"- machine: {man.get('machine', {}).get('platform')} ({man.get('machine', {}).get('cpus')} CPUs); "
              f"CUDA: {man.get('devices', {}).get('cuda_name') or 'none'}", ""]
    if df.empty:
        lines.append("No finished cells.")
    else:
        cells = df.drop_duplicates("key")
        lines.append(f"Finished cells: {len(cells)}; ok: {(cells['status'] == 'ok').sum()}; "
                     f"failed/diverged/timeout: {(cells['status'] != 'ok').sum()}.\n")
        for name, t in summary_tables(df).items():
            lines += [f"## {name}", "", _md_table(t), ""]
        fig = error_budget_figure(df, out / "error_vs_budget.png")
        if fig is not None:
            lines += ["## Error versus budget", "", "![error versus budget](error_vs_budget.png)", ""]
        bad = cells[cells["status"] != "ok"]
        lines += ["## Failed cells", "", _md_table(bad[["problem", "estimator", "metric", "seed", "status", "message"]])]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
