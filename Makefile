# blobench: `make run` (default matrix + report) and `make test` work on a fresh machine with only Python.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MATRIX ?= matrices/default.toml
JOBS ?= 2

.PHONY: run test install report bench check clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,digits,dask]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/blobench run $(MATRIX) --jobs $(JOBS) --report

test: $(STAMP)
	$(PY) -m pytest -q

check: $(STAMP)
	$(VENV)/bin/blobench check

bench: $(STAMP)
	$(PY) -m pytest -q tests/benchmarks -m 'not slow' --benchmark-only --benchmark-json=.benchmarks/latest.json

clean:
	rm -rf runs .pytest_cache

# Reference report (issue 7): the default matrix, fresh, plus the claims table at ci size -> reports/reference/
report: $(STAMP)
	rm -rf runs/reference
	$(VENV)/bin/blobench run $(MATRIX) --jobs $(JOBS) --run-id reference || test $$? -eq 3
	$(VENV)/bin/blobench report reference --out reports/reference --claims

# Headless browser for tests/test_browser.py (Debian's chromium; the test skips without it)
chromium:
	command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)
