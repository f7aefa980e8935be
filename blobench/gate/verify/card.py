"""Output of ``blobench verify``: the verification card (terminal), JSON, JUnit XML, markdown and HTML, and
the conformance matrix (estimator x property) that the reference report and docs/conformance.md include."""
from __future__ import annotations

import html
import json
import os
from collections import OrderedDict
from typing import Iterable
from xml.etree import ElementTree as ET

from blobench.gate.verify.common import ERROR, FAIL, NA, PASS, Check

MARK = {PASS: "pass", FAIL: "FAIL", NA: "n/a", ERROR: "ERROR"}


def _clip(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "~"


def card_text(rows: list[Check], seconds: float | None = None, width: int = 160) -> str:
    """One row per (property, problem): measured, expected, verdict, source; a summary line last."""
    out = []
    for subj in dict.fromkeys(r.subject for r in rows):
        rs = [r for r in rows if r.subject == subj]
        out.append(f"== {rs[0].kind} {subj}")
        out.append(f"{'property':26} {'problem':17} {'verdict':7} {'measured':44} {'expected':24} source")
        for r in rs:
            out.append(f"{_clip(r.prop, 26):26} {_clip(r.problem, 17):17} {MARK[r.verdict]:7} {_clip(r.measured, 44):44} "
                       f"{_clip(r.expected, 24):24} {_clip(r.source, max(10, width - 124))}")
    out.append(summary(rows, seconds))
    return "\n".join(out)


def summary(rows: list[Check], seconds: float | None = None) -> str:
    n = {v: sum(r.verdict == v for r in rows) for v in (PASS, FAIL, ERROR, NA)}
    t = f" in {seconds:.1f} s" if seconds is not None else ""
    verdict = "FAILED" if n[FAIL] or n[ERROR] else "OK"
    return f"verify {verdict}: {n[PASS]} pass, {n[FAIL]} fail, {n[ERROR]} error, {n[NA]} n/a{t}"


def to_json(rows: list[Check], seconds: float | None = None, size: str = "ci") -> str:
    return json.dumps({"size": size, "seconds": seconds, "ok": not any(r.failed for r in rows),
                       "rows": [r.as_dict() for r in rows]}, indent=1, default=str)


def to_junit(rows: list[Check], seconds: float | None = None) -> str:
    """JUnit XML: one testsuite per subject, one testcase per (property, problem); n/a rows are skipped."""
    root = ET.Element("testsuites", name="blobench verify")
    for subj in dict.fromkeys(r.subject for r in rows):
        rs = [r for r in rows if r.subject == subj]
        suite = ET.SubElement(root, "testsuite", name=f"{rs[0].kind}:{subj}", tests=str(len(rs)),
                              failures=str(sum(r.verdict == FAIL for r in rs)),
                              errors=str(sum(r.verdict == ERROR for r in rs)),
                              skipped=str(sum(r.verdict == NA for r in rs)),
                              time=f"{sum(r.seconds for r in rs):.3f}")
        for r in rs:
            tc = ET.SubElement(suite, "testcase", classname=f"blobench.verify.{subj}", name=f"{r.prop}[{r.problem}]",
                               time=f"{r.seconds:.3f}")
            msg = f"measured {r.measured}; expected {r.expected}; source {r.source}"
            if r.verdict == FAIL:
                ET.SubElement(tc, "failure", message=_clip(msg, 500)).text = msg
            elif r.verdict == ERROR:
                ET.SubElement(tc, "error", message=_clip(r.measured, 500)).text = r.measured
            elif r.verdict == NA:
                ET.SubElement(tc, "skipped", message=_clip(r.measured, 500))
    return ET.tostring(root, encoding="unicode")


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: list[Check], seconds: float | None = None) -> str:
    out = ["# blobench verify", "", summary(rows, seconds), ""]
    for subj in dict.fromkeys(r.subject for r in rows):
        rs = [r for r in rows if r.subject == subj]
        out += [f"## {rs[0].kind} `{subj}`", "", "| property | problem | verdict | measured | expected | source |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r.prop} | {r.problem} | {MARK[r.verdict]} | {_md_cell(r.measured)} | {_md_cell(r.expected)} | "
                f"{_md_cell(r.source)} |" for r in rs]
        out.append("")
    return "\n".join(out)


def to_html(rows: list[Check], seconds: float | None = None) -> str:
    colour = {PASS: "#e6f4e6", FAIL: "#f8d7d7", ERROR: "#f8d7d7", NA: "#f2f2f2"}
    body = [f"<h1>blobench verify</h1><p>{html.escape(summary(rows, seconds))}</p>"]
    for subj in dict.fromkeys(r.subject for r in rows):
        rs = [r for r in rows if r.subject == subj]
        body.append(f"<h2>{rs[0].kind} <code>{html.escape(subj)}</code></h2><table>"
                    "<tr><th>property</th><th>problem</th><th>verdict</th><th>measured</th><th>expected</th><th>source</th></tr>")
        for r in rs:
            body.append(f"<tr style='background:{colour[r.verdict]}'>" + "".join(
                f"<td>{html.escape(str(v))}</td>" for v in (r.prop, r.problem, MARK[r.verdict], r.measured, r.expected, r.source)) + "</tr>")
        body.append("</table>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>blobench verify</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
            "font-size:12px;text-align:left}</style></head><body>" + "".join(body) + "</body></html>")


def write_all(rows: list[Check], out_dir: str, seconds: float | None = None, size: str = "ci") -> list[str]:
    """verify.md, verify.html and verify.json under ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, text in (("verify.md", to_markdown(rows, seconds)), ("verify.html", to_html(rows, seconds)),
                       ("verify.json", to_json(rows, seconds, size))):
        p = os.path.join(out_dir, name)
        with open(p, "w") as fh:
            fh.write(text)
        paths.append(p)
    return paths


# -- the conformance matrix -------------------------------------------------------------------------------------

def _base_prop(prop: str) -> str:
    return prop


def matrix_cells(rows: Iterable[Check]) -> "OrderedDict[str, OrderedDict[str, str]]":
    """{subject: {property: cell}}: a cell aggregates the property over problems: FAIL (with the failing
    problems) if any failed, pass if any passed, else n/a; the measured figure of the first failing (else
    first passing) row is shown."""
    by: OrderedDict = OrderedDict()
    for r in rows:
        by.setdefault(r.subject, OrderedDict()).setdefault(_base_prop(r.prop), []).append(r)
    out: OrderedDict = OrderedDict()
    for subj, props in by.items():
        out[subj] = OrderedDict()
        for prop, rs in props.items():
            bad = [r for r in rs if r.failed]
            good = [r for r in rs if r.verdict == PASS]
            if bad:
                r = bad[0]
                where = ",".join(dict.fromkeys(b.problem for b in bad))
                fig = f"{r.value:.3g}" if r.value is not None else _clip(r.measured, 40)
                out[subj][prop] = f"FAIL ({where}: {fig})"
            elif good:
                r = good[0]
                fig = f" {r.value:.3g}" if r.value is not None else ""
                out[subj][prop] = f"pass{fig}"
            else:
                out[subj][prop] = "n/a"
    return out


def matrix_markdown(rows: list[Check], reasons: dict[tuple[str, str], str] | None = None) -> str:
    """The estimator (or problem) x property table (markdown), then each failure with its recorded reason."""
    cells = matrix_cells(rows)
    props = list(dict.fromkeys(p for c in cells.values() for p in c))
    kinds = {r.kind for r in rows}
    label = kinds.pop() if len(kinds) == 1 else "subject"  # the problems' table is headed "problem"
    out = [f"| {label} | " + " | ".join(props) + " |", "| --- |" + " --- |" * len(props)]
    for subj, c in cells.items():
        out.append(f"| {subj} | " + " | ".join(_md_cell(c.get(p, "")) for p in props) + " |")
    fails = [r for r in rows if r.failed]
    if fails:
        out += ["", "Failures and their reasons:", ""]
        for r in fails:
            why = (reasons or {}).get((r.subject, r.prop)) or (reasons or {}).get((r.subject, "*")) or "UNEXPLAINED"
            out.append(f"- `{r.subject}` {r.prop} on {r.problem}: {_md_cell(_clip(r.measured, 120))}. {why}")
    return "\n".join(out)
