"""The page template: blocks rendered both to ``report.md`` and to a self-contained ``index.html``.

The HTML page is offline (no network, no server): a table of contents with anchors, one ``<section>`` per
``h2``, collapsible ``<details>`` blocks, red-flagged violations, and tables sortable by clicking a
header (a small inline script, :data:`SCRIPT`). Each figure links its SVG beside its PNG.
"""
from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd


def fmt(v: Any) -> str:
    """A table cell: floats to 4 significant digits, ``nan`` for missing, booleans as words."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v).replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    """A markdown table (``_(none)_`` for an empty frame)."""
    if df.empty:
        return "_(none)_\n"
    cols = [c for c in df.columns if c != "_flag"]
    out = "| " + " | ".join(str(c) for c in cols) + " |\n|" + "---|" * len(cols) + "\n"
    for _, r in df.iterrows():
        cells = [fmt(r[c]).replace("|", "\\|") for c in cols]
        if "_flag" in df.columns and bool(r["_flag"]):
            cells[0] = "**VIOLATION** " + cells[0]
        out += "| " + " | ".join(cells) + " |\n"
    return out


def _sort_key(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(bool(v)))
    if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
        return repr(float(v))
    return ""


def html_table(df: pd.DataFrame) -> str:
    """A sortable HTML table; a ``_flag`` column (not shown) marks violating rows in red."""
    if df.empty:
        return "<p><em>(none)</em></p>"
    cols = [c for c in df.columns if c != "_flag"]
    head = "".join(f"<th title='click to sort'>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for _, r in df.iterrows():
        cls = " class='violation'" if "_flag" in df.columns and bool(r["_flag"]) else ""
        tds = []
        for c in cols:
            k = _sort_key(r[c])
            tds.append(f"<td data-v='{k}'>" if k else "<td>")
            tds[-1] += html.escape(fmt(r[c])) + "</td>"
        rows.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")
    return s or "section"


class Doc:
    """Blocks rendered both to markdown and to HTML (headings get unique anchors for the TOC)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []
        self._ids: set[str] = set()

    def _anchor(self, text: str) -> str:
        base = slug(text)
        a, i = base, 2
        while a in self._ids:
            a, i = f"{base}-{i}", i + 1
        self._ids.add(a)
        return a

    def h(self, level: int, text: str, anchor: str | None = None) -> str:
        a = self._anchor(anchor or text)
        self.blocks.append(("h", (level, text, a)))
        return a

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list) -> None:
        """A bullet list; an item ``(text, anchor)`` links to that anchor of the page."""
        self.blocks.append(("ul", items))

    def link(self, text: str, href: str) -> None:
        """A paragraph that is a link to a file beside the page (e.g. the dashboard)."""
        self.blocks.append(("link", (text, href)))

    def table(self, df: pd.DataFrame) -> None:
        self.blocks.append(("table", df))

    def img(self, name: str, alt: str, svg: str | None = None) -> None:
        self.blocks.append(("img", (name, alt, svg)))

    def flag(self, text: str) -> None:
        """A violation, in red in the page and in bold in markdown."""
        self.blocks.append(("flag", text))

    def details(self, summary: str) -> "_Details":
        """``with doc.details("label"):`` the blocks added inside are collapsed in the page."""
        return _Details(self, summary)

    def extend(self, other: "Doc") -> None:
        for kind, v in other.blocks:
            if kind == "h":
                a = v[2]
                while a in self._ids:
                    a += "-x"
                self._ids.add(a)
                v = (v[0], v[1], a)
            self.blocks.append((kind, v))

    def headings(self) -> list[tuple[int, str, str]]:
        return [v for k, v in self.blocks if k == "h"]

    def markdown(self) -> str:
        out: list[str] = []
        for kind, v in self.blocks:
            if kind == "h":
                out += ["#" * v[0] + " " + v[1], ""]
            elif kind == "p":
                out += [v, ""]
            elif kind == "ul":
                out += [f"- {i[0]} ([see](#{i[1]}))" if isinstance(i, tuple) else f"- {i}" for i in v] + [""]
            elif kind == "table":
                out += [md_table(v)]
            elif kind == "img":
                out += [f"![{v[1]}]({v[0]})" + (f" ([SVG]({v[2]}))" if v[2] else ""), ""]
            elif kind == "flag":
                out += [f"**VIOLATION: {v}**", ""]
            elif kind == "link":
                out += [f"[{v[0]}]({v[1]})", ""]
            elif kind == "open":
                out += [f"_{v}:_", ""]
        return "\n".join(out) + "\n"

    def html_body(self) -> str:
        out = []
        in_section = False
        for kind, v in self.blocks:
            if kind == "h":
                level, text, a = v
                if level == 2:
                    if in_section:
                        out.append("</section>")
                    out.append(f"<section id='sec-{a}'>")
                    in_section = True
                out.append(f"<h{level} id='{a}'>{html.escape(text)} <a class='anchor' href='#{a}'>#</a></h{level}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(v)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(
                    f"<li>{html.escape(i[0])} <a href='#{html.escape(i[1])}'>(see)</a></li>" if isinstance(i, tuple)
                    else f"<li>{html.escape(i)}</li>" for i in v) + "</ul>")
            elif kind == "table":
                out.append(html_table(v))
            elif kind == "img":
                name, alt, svg = v
                link = f" <a href='{html.escape(svg)}'>[SVG]</a>" if svg else ""
                out.append(f"<figure><a href='{html.escape(svg or name)}'><img src=\"{html.escape(name)}\" "
                           f"alt=\"{html.escape(alt)}\"></a><figcaption>{html.escape(alt)}{link}</figcaption></figure>")
            elif kind == "flag":
                out.append(f"<p class='violation flag'>VIOLATION: {html.escape(v)}</p>")
            elif kind == "link":
                out.append(f"<p><a href='{html.escape(v[1])}'>{html.escape(v[0])}</a></p>")
            elif kind == "open":
                out.append(f"<details><summary>{html.escape(v)}</summary>")
            elif kind == "close":
                out.append("</details>")
        if in_section:
            out.append("</section>")
        return "\n".join(out)

    def toc_html(self) -> str:
        """Nested list of links to every h2 and h3."""
        out, level = ["<nav id='toc'><strong>Contents</strong>"], 1
        for lv, text, a in self.headings():
            if lv < 2 or lv > 3:
                continue
            while level < lv:
                out.append("<ul>")
                level += 1
            while level > lv:
                out.append("</ul>")
                level -= 1
            out.append(f"<li><a href='#{a}'>{html.escape(text)}</a></li>")
        while level > 1:
            out.append("</ul>")
            level -= 1
        out.append("</nav>")
        return "".join(out)

    def toc_markdown(self) -> str:
        lines = []
        for lv, text, a in self.headings():
            if 2 <= lv <= 3:
                lines.append("  " * (lv - 2) + f"- [{text}](#{a})")
        return "\n".join(lines) + "\n\n" if lines else ""


class _Details:
    def __init__(self, doc: Doc, summary: str) -> None:
        self.doc, self.summary = doc, summary

    def __enter__(self) -> Doc:
        self.doc.blocks.append(("open", self.summary))
        return self.doc

    def __exit__(self, *exc: object) -> None:
        self.doc.blocks.append(("close", None))


CSS = ("body{font-family:system-ui,sans-serif;max-width:1250px;margin:1em auto;padding:0 1em;color:#222;line-height:1.4}"
       "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
       "th{background:#eee;cursor:pointer;user-select:none}th.asc:after{content:' \\25B2'}th.desc:after{content:' \\25BC'}"
       "img{max-width:100%}figure{margin:.8em 0}figcaption{font-size:12px;color:#555}"
       "#toc{background:#f6f6f6;border:1px solid #ddd;padding:.5em 1em;font-size:14px}#toc ul{margin:.2em 0}"
       "a.anchor{color:#bbb;text-decoration:none;font-size:70%}section{border-top:1px solid #ddd;margin-top:1.5em}"
       ".violation td{background:#fdd;color:#a00;font-weight:bold}p.violation{color:#a00;font-weight:bold;"
       "border-left:4px solid #c00;padding-left:.5em}details{margin:.4em 0}summary{cursor:pointer;color:#036}"
       ".summary-box{background:#f9fbff;border:1px solid #cde;padding:.3em 1em}")

#: Click a header to sort its table (numbers by value, via data-v; text otherwise). At the load event it sets, on
#: <body>, data-images-total/-loaded (images decoded), data-violations (flagged elements) with the computed colour
#: of the first, and data-toc-links/-broken (TOC links without a target): read by the headless-browser test.
#: Offline: no external resource.
SCRIPT = """<script>
function bbSort(th){var t=th.closest('table'),b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
var asc=!th.classList.contains('asc');Array.prototype.forEach.call(th.parentNode.children,function(h){h.classList.remove('asc','desc');});
th.classList.add(asc?'asc':'desc');var rows=Array.prototype.slice.call(b.rows);
function key(r){var c=r.cells[i];if(!c)return '';var v=c.getAttribute('data-v');return v!==null&&v!==''?parseFloat(v):c.textContent;}
rows.sort(function(a,c){var x=key(a),y=key(c);var n=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));return asc?n:-n;});
rows.forEach(function(r){b.appendChild(r);});}
window.addEventListener('load',function(){
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){bbSort(th);});});
var im=document.images,ok=0;for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-total',im.length);document.body.setAttribute('data-images-loaded',ok);
var v=document.querySelectorAll('.violation');document.body.setAttribute('data-violations',v.length);
if(v.length){var c=v[0].querySelector('td')||v[0];document.body.setAttribute('data-violation-color',getComputedStyle(c).color);}
var bad=0;document.querySelectorAll('#toc a').forEach(function(a){if(!document.getElementById(a.getAttribute('href').slice(1)))bad++;});
document.body.setAttribute('data-toc-links',document.querySelectorAll('#toc a').length);document.body.setAttribute('data-toc-broken',bad);});
</script>"""


def render_html(title: str, header: Doc, body: Doc, lead: Doc | None = None) -> str:
    """The whole page: title (``header``), then what a reader needs first (``lead``: the summary and the findings),
    then the table of contents (collapsed: it lists every section and sub-section), then the sections (``body``)."""
    lead_html = lead.html_body() if lead is not None else ""
    n = sum(1 for lv, _, _ in body.headings() if lv == 2)
    toc = body.toc_html().replace("<nav id='toc'><strong>Contents</strong>",
                                  f"<nav id='toc'><details><summary><strong>Contents</strong> ({n} sections)</summary>", 1)
    toc = toc[: -len("</nav>")] + "</details></nav>" if toc.endswith("</nav>") else toc
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style>{SCRIPT}</head><body>\n{header.html_body()}\n{lead_html}\n{toc}\n"
            f"{body.html_body()}\n</body></html>\n")


def render_markdown(header: Doc, body: Doc, lead: Doc | None = None) -> str:
    """report.md: title, the summary and findings (``lead``), the contents (sections only), the sections."""
    toc = "".join(f"- [{text}](#{a})\n" for lv, text, a in body.headings() if lv == 2)
    return (header.markdown() + (lead.markdown() if lead is not None else "") + "## Contents\n\n"
            + (toc + "\n" if toc else "") + body.markdown())
