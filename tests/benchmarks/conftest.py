"""Benchmarks run only under ``make bench`` (pytest --benchmark-only) or BLOBENCH_BENCH=1; ``make test`` skips them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    if config.getoption("benchmark_only", default=False) or os.environ.get("BLOBENCH_BENCH") == "1":
        return
    skip = pytest.mark.skip(reason="benchmark: run with `make bench` (pytest --benchmark-only)")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)
