"""The interactive dashboard (issue 26): one self-contained offline dashboard.html beside index.html. Headless
Chromium opens it from disk and the page reports, on <body>, what it drew; a URL fragment drives the controls
(``toggle`` clicks the method checkboxes, the same handler a user's click runs). Skipped without Chromium
(``make chromium``)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from blobench.report import write_report
from tests.test_browser import CHROMIUM, chromium
from tests.test_report import ALL, make_run


@pytest.fixture(scope="module")
def dash(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dash")
    out = root / "rep"
    write_report(make_run(root, ALL), out_dir=out)
    return out / "dashboard.html"


def state(page: Path, fragment: str = "") -> dict[str, str]:
    r = chromium("--dump-dom", page.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    body = re.search(r"<body([^>]*)>", r.stdout)
    assert body and "data-ready" in body.group(1), f"dashboard did not draw: {r.stdout[:300]!r} {r.stderr[-300:]!r}"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))


def test_dashboard_is_self_contained_and_linked(dash):
    page = dash.read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page)  # no external script, style or link
    assert "http://" not in page and "https://" not in page
    assert "dashboard.html" in (dash.parent / "index.html").read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make chromium`)")
def test_dashboard_opens_offline_and_toggles_methods(dash):
    s = state(dash)
    assert int(s["curves"]) == 2 and int(s["methods"]) == 2  # convergence: itd and aid-cg (3 seeds: mean curves)
    assert int(s["bands"]) == 2 and s["ylog"] == "1"
    s = state(dash, "toggle=itd")  # the itd checkbox clicked: its curve goes
    assert int(s["curves-before"]) == 2 and int(s["curves"]) == 1 and int(s["methods"]) == 1
    s = state(dash, "toggle=itd,aid-cg")
    assert int(s["curves"]) == 0
    s = state(dash, "bands=0")  # every seed's own curve instead of the mean and band
    assert int(s["curves"]) == 6 and int(s["bands"]) == 0
    s = state(dash, "x=calls&log=0")
    assert s["xaxis"] == "1" and s["ylog"] == "0" and int(s["curves"]) == 2
    s = state(dash, "filter=estimator=itd")  # a filter on any parameter
    assert int(s["curves"]) == 1
    s = state(dash, "filter=seed=1&bands=0")
    assert int(s["curves"]) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make chromium`)")
def test_dashboard_negative_control_a_broken_script_draws_nothing(dash, tmp_path):
    """The checks can fail: with the toggle handler removed, the toggled curve stays."""
    page = dash.read_text().replace("S.hidden[m]=!i.checked;draw();", "")
    broken = tmp_path / "dashboard.html"
    broken.write_text(page)
    s = state(broken, "toggle=itd")
    assert int(s["curves"]) == 2
