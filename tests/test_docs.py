"""The documentation is kept true: docs/ builds offline with mkdocs, and every ```python block of docs/ runs.

- The site builds (``python -m mkdocs build``, the command behind ``make docs``) with no warning except a link to
  a page that another branch adds (:data:`PARALLEL_PAGES`), and no page loads a script, a stylesheet or a font
  from the network (the built-in theme ships its own).
- The generated reference (docs/gen_reference.py, the build's hook) lists every registered name.
- Every ```python block of README.md and of every page under docs/ (the generated reference aside) runs, the
  blocks of one page in order in one fresh interpreter, in a temporary working folder holding a copy of
  ``matrices/``. A block whose first line is ``# docs: slow`` runs only with ``-m slow``; such a block must not be
  needed by the blocks after it.
- README.md's links into the repository and its ``make`` targets exist.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SLOW_MARK = "# docs: slow"
#: pages other branches write (linked from docs/index.md); a link to one is a warning until it lands
PARALLEL_PAGES = ("verify.md", "conformance.md", "running.md", "lower_bounds.md", "data.md", "reports.md")
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, source) of each ```python block of a markdown page."""
    text = page.read_text()
    return [(text[:m.start()].count("\n") + 2, m.group(1)) for m in _FENCE.finditer(text)]


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "reference" not in p.relative_to(DOCS).parts)


def _offline_violations(site: Path) -> list[str]:
    """Scripts, stylesheets, fonts and images the built site would fetch from the network."""
    bad = []
    tag = re.compile(r"<(script|link|img|iframe)\b[^>]*?\b(?:src|href)=[\"'](?:https?:)?//[^>]*>", re.I)
    for f in site.rglob("*.html"):
        for m in tag.finditer(f.read_text(errors="replace")):
            if m.group(1).lower() == "link" and "stylesheet" not in m.group(0) and "preload" not in m.group(0) \
                    and "icon" not in m.group(0):
                continue
            bad.append(f"{f.relative_to(site)}: {m.group(0)[:120]}")
    for f in site.rglob("*.css"):
        for m in re.finditer(r"(@import\s+[\"']?|url\(\s*[\"']?)(https?:)?//", f.read_text(errors="replace")):
            bad.append(f"{f.relative_to(site)}: {m.group(0)}")
    return bad


def test_the_site_builds_offline_with_the_generated_reference(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-d", str(site)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")]
    pending = [p for p in PARALLEL_PAGES if not (DOCS / p).exists()]
    unexpected = [w for w in warnings if not any(f"'{p}'" in w or f"'../{p}'" in w for p in pending)]
    assert not unexpected, "\n".join(unexpected)
    assert (site / "index.html").exists() and (site / "reference" / "cli.html").exists()
    assert not _offline_violations(site), "\n".join(_offline_violations(site))
    # the built-in names, from a fresh interpreter (earlier tests register plugins in this one)
    code = ("import json; from blobench import harness; "
            "print(json.dumps([harness.problems(), harness.estimators(), harness.claims()]))")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    problems, estimators, claims = json.loads(fresh.stdout.strip().splitlines()[-1])
    pages = {kind: (site / "reference" / f"{kind}.html").read_text() for kind in ("problems", "estimators", "claims")}
    for kind, names in (("problems", problems), ("estimators", estimators), ("claims", claims)):
        missing = [n for n in names if f'id="{n}"' not in pages[kind]]
        assert not missing, f"reference/{kind} lacks {missing}"
    cli = (site / "reference" / "cli.html").read_text()
    for cmd in ("list", "describe", "estimate", "run", "report", "check", "export", "compare", "runs"):
        assert f"blobench {cmd}" in cli, cmd


def test_the_offline_check_catches_a_cdn_script(tmp_path):
    """The check above can fail: a page that loads highlight.js from a CDN (what the theme's ``highlightjs:
    true`` does) and a stylesheet importing a web font are both reported."""
    (tmp_path / "index.html").write_text('<script src="https://cdnjs.cloudflare.com/x/highlight.min.js"></script>'
                                         '<a href="https://www.mkdocs.org/">MkDocs</a>')
    (tmp_path / "a.css").write_text("@import url('https://fonts.googleapis.com/css?family=Lato');")
    bad = _offline_violations(tmp_path)
    assert len(bad) == 2 and "highlight" in bad[0], bad


def _gen_module():
    spec = importlib.util.spec_from_file_location("docs_gen_reference", DOCS / "gen_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_matrix_key_without_a_line_in_the_reference_stops_the_build(monkeypatch):
    from blobench.engine import matrix

    gen = _gen_module()
    assert "| `zip` |" in gen.matrix_page()
    monkeypatch.setattr(matrix, "EXP_KEYS", matrix.EXP_KEYS | {"new_key"})
    with pytest.raises(SystemExit, match="new_key"):
        gen.matrix_page()


def _run_page(page: Path, tmp_path: Path, slow: bool) -> None:
    name = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name
    blocks = [(line, src) for line, src in python_blocks(page) if slow or not src.startswith(SLOW_MARK)]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "matrices", work / "matrices")
    (tmp_path / "blocks.json").write_text(json.dumps([[name, ln, s] for ln, s in blocks]))
    driver = ("import json, sys\nns = {'__name__': '__main__'}\n"
              "for page, line, src in json.load(open(sys.argv[1])):\n"
              "    exec(compile('\\n' * (line - 1) + src, page, 'exec'), ns)\n")
    env = _env()
    env.update(BLOBENCH_CACHE_DIR=str(tmp_path / "cache"), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-c", driver, str(tmp_path / "blocks.json")], cwd=work, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{name}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


_WITH_CODE = [p for p in [ROOT / "README.md", *_pages()] if python_blocks(p)]
_WITH_SLOW = [p for p in _WITH_CODE if any(s.startswith(SLOW_MARK) for _, s in python_blocks(p))]


@pytest.mark.parametrize("page", _WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_of_the_docs_run(page, tmp_path):
    _run_page(page, tmp_path, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("page", _WITH_SLOW, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_of_the_docs_run_slow_ones_included(page, tmp_path):
    _run_page(page, tmp_path, slow=True)


def test_a_failing_block_fails_the_page_and_names_its_line(tmp_path):
    """The block runner is not a no-op: a page whose second block raises fails, and the error points at the
    page's own line number."""
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'x is 1'\n```\n")
    with pytest.raises(AssertionError, match=r"page\.md\", line 10"):
        _run_page(page, tmp_path, slow=False)


def test_readme_links_and_make_targets_exist():
    readme = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in t]
    assert links, "the README links into docs/"
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, missing
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", readme))
    assert used and used <= targets, used - targets
