"""A real browser (issue 7): the HTML report opens offline in headless Chromium and every image loads.

index.html sets ``data-images-total`` / ``data-images-loaded`` on <body> at the load event (counting images
with ``naturalWidth > 0``); Chromium's ``--dump-dom`` prints the DOM after load. Skipped, with the reason,
where Debian's ``chromium`` is not installed (``make chromium`` installs it).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.report import write_report
from tests.test_report import ALL, make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make chromium`)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=90)


def images_loaded(index: Path) -> tuple[int, int]:
    """(loaded, total) images as Chromium saw them after the load event."""
    r = chromium("--dump-dom", index.resolve().as_uri())
    m = re.search(r'<body[^>]*data-images-total="(\d+)"[^>]*data-images-loaded="(\d+)"', r.stdout)
    assert m, f"no image counters in the dumped DOM (rc={r.returncode}): {r.stdout[:300]!r} {r.stderr[-300:]!r}"
    return int(m.group(2)), int(m.group(1))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    return write_report(make_run(root, ALL), root / "reports").parent


def test_every_image_loads_and_screenshot(report_dir):
    index = report_dir / "index.html"
    loaded, total = images_loaded(index)
    assert total == 4 and loaded == total
    shot = report_dir / "screenshot.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1280,2000", index.resolve().as_uri())
    assert shot.is_file(), r.stderr[-500:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page compresses to a few KB
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 2000 and img.shape[1] == 1280
    assert img[..., :3].std() > 0.05  # not a uniform page: text, tables and figures were drawn


def test_negative_control_missing_image_is_detected(report_dir, tmp_path):
    """The check can fail: with one figure deleted, Chromium reports one image fewer loaded."""
    copy = tmp_path / "broken"
    shutil.copytree(report_dir, copy)
    (copy / "bias_variance.png").unlink()
    loaded, total = images_loaded(copy / "index.html")
    assert total == 4 and loaded == 3
