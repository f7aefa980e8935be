"""Generate docs/reference/ from the code: the CLI parser, the matrix keys, the registry's docstrings and params.

Run by ``mkdocs build`` (``hooks:`` in mkdocs.yml: :func:`on_pre_build`) and by hand with
``python docs/gen_reference.py [OUT_DIR]``. Nothing here is written by hand except the one-line meaning of each
matrix key (:data:`MATRIX_KEYS`): a key the matrix reader accepts without a line here stops the build, so the
page cannot fall behind the code. The generated folder is ignored by git and rewritten on every build (a file
is only rewritten when its text changed, so ``mkdocs serve`` does not loop).

This file lives under docs/, outside the ``blobench`` package: it reads the package, the package never imports it.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "reference"

#: one line per key of a matrix file (blobench.engine.matrix.TOP_KEYS / EXP_KEYS); see that module's docstring
MATRIX_KEYS = {
    "top": {
        "name": "default run id (the run folder `runs/<name>/`); `--run-id` overrides it",
        "description": "free text, kept in the run's manifest",
        "seeds": "list of ints: every experiment runs once per seed (an experiment may set its own)",
        "devices": 'list: "cpu", "cuda", "cuda:1", ...; a CUDA cell on a machine without one is recorded `unavailable`',
        "experiment": "the `[[experiment]]` tables, one per slice of the matrix (keys below)",
        "extends": "path of a parent matrix, relative to this file: its keys and experiments are inherited",
        "drop": "names of parent experiments to leave out (with `extends`)",
    },
    "experiment": {
        "name": "the experiment's name (report sections and `extends` overrides refer to it)",
        "problem": "a registered problem name ([problems](problems.md))",
        "problem_params": "the problem's parameters; a list value sweeps (cartesian product)",
        "estimator": "one registered estimator name ([estimators](estimators.md))",
        "estimators": "several estimator names (instead of `estimator`)",
        "estimator_params": "parameters passed to every listed estimator that declares them; lists sweep",
        "per_estimator": "`{name = {param = value}}`: parameters for one estimator only; lists sweep",
        "metric": "a registered metric name ([metrics](metrics.md))",
        "metric_params": "the metric's parameters (never swept: a list is a list)",
        "seeds": "this experiment's seeds (overrides the top-level list)",
        "devices": "this experiment's devices (overrides the top-level list)",
        "zip": "a group (list of names) or groups of swept parameters whose lists advance together instead of crossing",
    },
}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _fence(text: str) -> str:
    """A docstring as a text block (its formulas and layout survive; markdown would eat ``*`` and ``_``)."""
    return "```text\n" + inspect.cleandoc(text).rstrip() + "\n```\n"


def _esc(text: Any) -> str:
    """Plain text for markdown: ``*`` (y*, v*) would start emphasis and ``<`` a tag."""
    return str(text).replace("\\", "\\\\").replace("*", "\\*").replace("<", "&lt;")


def _cell(text: Any) -> str:
    """Plain text for a table cell (one line, ``|`` escaped)."""
    return _esc(text).replace("|", "\\|").replace("\n", " ")


def _params_table(params: dict[str, Any]) -> str:
    if not params:
        return "No parameters.\n"
    rows = ["| parameter | type, range, default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{n}` | {_cell(p.describe())} | {_cell(p.doc)} |" for n, p in params.items()]
    return "\n".join(rows) + "\n"


def _module_of(obj: Any) -> str:
    return getattr(obj, "__module__", "?")


def cli_page() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal width: fix it so the page is stable
    from blobench.cli import build_parser

    ap = build_parser()
    out = ["# CLI reference\n",
           "Generated from `blobench.cli.build_parser()` (the parser the `blobench` command runs). Bad input "
           "prints one line `blobench: error: ...` and exits 2; a run with failed, diverged or timed-out cells "
           "exits 3; a failing claims gate exits 1.\n",
           "## blobench\n", "```text\n" + ap.format_help().rstrip() + "\n```\n"]
    subs = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in subs[0].choices.items():
        out += [f"## blobench {name}\n", "```text\n" + parser.format_help().rstrip() + "\n```\n"]
    return "\n".join(out)


def matrix_page() -> str:
    from blobench.engine import matrix

    for kind, keys in (("top", matrix.TOP_KEYS), ("experiment", matrix.EXP_KEYS)):
        missing = sorted(set(keys) - set(MATRIX_KEYS[kind]))
        stale = sorted(set(MATRIX_KEYS[kind]) - set(keys))
        if missing or stale:
            raise SystemExit(f"docs/gen_reference.py: matrix {kind} keys out of date: undocumented {missing}, "
                             f"no longer accepted {stale}; update MATRIX_KEYS")
    out = ["# Matrix keys\n",
           "A matrix is a TOML file (`matrices/*.toml`) that `blobench run` expands into cells: problem x "
           "estimator x parameter sweep x metric x seed x device. Every cell is validated before anything runs; "
           "an unknown key is an error that names the file and what is allowed. Keys from "
           "`blobench.engine.matrix.TOP_KEYS` and `EXP_KEYS`.\n",
           "## Top-level keys\n", "| key | meaning |", "| --- | --- |"]
    out += [f"| `{k}` | {MATRIX_KEYS['top'][k]} |" for k in sorted(matrix.TOP_KEYS)]
    out += ["", "## Experiment keys (`[[experiment]]`)\n", "| key | meaning |", "| --- | --- |"]
    out += [f"| `{k}` | {MATRIX_KEYS['experiment'][k]} |" for k in sorted(matrix.EXP_KEYS)]
    out += ["", "## The matrix reader's own description (`blobench/engine/matrix.py`)\n", _fence(matrix.__doc__ or "")]
    shipped = sorted((ROOT / "matrices").glob("*.toml"))
    if shipped:
        out += ["## Shipped matrices\n"]
        for f in shipped:
            first = f.read_text().splitlines()[0] if f.read_text() else ""
            out.append(f"- `matrices/{f.name}`: {first.lstrip('# ').strip()}")
        out.append("")
    return "\n".join(out)


def _plugin_page(kind: str, reg: Any, title: str, intro: str) -> str:
    """One section per module (its docstring once), one subsection per registered name (docstring, params)."""
    by_module: dict[str, list[str]] = {}
    for n in reg.names():
        by_module.setdefault(_module_of(reg.get(n)), []).append(n)
    out = [f"# {title}\n", intro + "\n",
           "| name | module | summary |", "| --- | --- | --- |"]
    for n in reg.names():
        obj = reg.get(n)
        doc = " ".join(inspect.cleandoc(getattr(obj, "__doc__", None) or "(no docstring)").split("\n\n")[0].split())
        out.append(f"| [`{n}`](#{n}) | `{_module_of(obj)}` | {_cell(doc)} |")
    out.append("")
    for mod in sorted(by_module):
        out.append(f"## `{mod}`\n")
        mdoc = sys.modules[mod].__doc__ if mod in sys.modules else None
        if mdoc and kind != "metric":
            out.append(_fence(mdoc))
        for n in by_module[mod]:
            obj = reg.get(n)
            out.append(f"### {n} {{#{n}}}\n")
            out.append(_fence(getattr(obj, "__doc__", None) or "(no docstring)"))
            out.append(_params_table(getattr(obj, "params", {}) or {}))
    return "\n".join(out)


def glossary_page() -> str:
    from blobench.core.registry import ESTIMATORS, METRICS, PROBLEMS

    uses: dict[str, list[tuple[str, str, Any]]] = {}
    for kind, reg in (("problem", PROBLEMS), ("estimator", ESTIMATORS), ("metric", METRICS)):
        for n in reg.names():
            for pname, p in (getattr(reg.get(n), "params", {}) or {}).items():
                uses.setdefault(pname, []).append((kind, n, p))
    out = ["# Parameter glossary\n",
           "Every parameter name declared by a registered problem, estimator or metric, with the meaning its "
           "first declaration gives and who declares it. Shared names mean the same thing everywhere "
           "(see the glossary in [the design](../design.md#glossary)); `blobench describe NAME` shows one "
           "plugin's parameters with their ranges.\n",
           "| name | meaning (first declaration) | declared by |", "| --- | --- | --- |"]
    for pname in sorted(uses):
        decl = uses[pname]
        doc = next((p.doc for _, _, p in decl if p.doc), "")
        who = ", ".join(f"{n}" for _, n, _ in decl)
        out.append(f"| `{pname}` | {_cell(doc)} | {_cell(who)} |")
    return "\n".join(out) + "\n"


def claims_page() -> str:
    from blobench.core.registry import CLAIMS

    out = ["# Claims\n",
           "Every registered claim: the theorem it checks, its citation, the outcome recorded as expected "
           "and the negative control that must fail. `blobench check NAME` runs one at CI size; "
           "`blobench describe NAME` prints its statement.\n",
           "| claim | citation | expected | negative control | module |", "| --- | --- | --- | --- | --- |"]
    for n in CLAIMS.names():
        c = CLAIMS.get(n)
        out.append(f"| [`{n}`](#{n}) | {_cell(c.citation)} | {_cell(c.expected)} | {_cell(c.control)} | "
                   f"`{_module_of(c)}` |")
    out.append("")
    for n in CLAIMS.names():
        c = CLAIMS.get(n)
        out.append(f"## {n} {{#{n}}}\n")
        out.append(f"**Statement.** {_esc(c.statement)}\n")
        out.append(f"**Citation.** {_esc(c.citation)}\n")
        out.append(f"**Expected.** {c.expected}" + (f" ({_esc(c.evidence_note)})" if c.evidence_note else "") + "\n")
        out.append(f"**Negative control.** {_esc(c.control)}\n")
        if getattr(c, "positive_control", ""):
            out.append(f"**Positive control.** {_esc(c.positive_control)}\n")
    return "\n".join(out)


def generate(out: Path = OUT) -> list[Path]:
    """Write every reference page under ``out``; returns their paths."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from blobench.core.registry import ESTIMATORS, METRICS, PROBLEMS, discover

    discover()
    pages = {
        "index.md": "# Reference\n\nGenerated from the code on every docs build (`docs/gen_reference.py`); "
                    "do not edit these pages by hand.\n\n"
                    "- [CLI](cli.md): every `blobench` command and option.\n"
                    "- [Matrix keys](matrix.md): what a matrix TOML file may say.\n"
                    "- [Parameter glossary](glossary.md): every parameter name and who declares it.\n"
                    "- [Problems](problems.md), [estimators](estimators.md), [metrics](metrics.md): "
                    "docstrings and parameters of everything registered.\n"
                    "- [Claims](claims.md): the theorems checked, their citations and controls.\n",
        "cli.md": cli_page(),
        "matrix.md": matrix_page(),
        "glossary.md": glossary_page(),
        "problems.md": _plugin_page("problem", PROBLEMS, "Problems",
                                    "Registered problems (`blobench list problems`), from their docstrings and "
                                    "declared parameters. Each owns its ground truth in float64."),
        "estimators.md": _plugin_page("estimator", ESTIMATORS, "Estimators",
                                      "Registered hypergradient estimators (`blobench list estimators`), from "
                                      "their docstrings and declared parameters."),
        "metrics.md": _plugin_page("metric", METRICS, "Metrics",
                                   "Registered metrics (`blobench list metrics`): each turns one cell into tidy "
                                   "rows; `metric_params` in a matrix sets the parameters below."),
        "claims.md": claims_page(),
    }
    paths = []
    for name, text in pages.items():
        _write(out / name, text)
        paths.append(out / name)
    return paths


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """mkdocs hook: regenerate the reference pages before mkdocs collects the files of docs_dir."""
    generate(Path(config["docs_dir"]) / "reference")


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p)
