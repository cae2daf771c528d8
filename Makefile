# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test fuzz bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# project-x-py (test only) declares Python >= 3.12 but runs on 3.11 with deprecated 1.2
	$(PY) -m pip install --quiet --ignore-requires-python 'project-x-py==4.4.1' 'deprecated==1.2.18'
	$(PY) -m engine.warmup
	@touch $(STAMP)

run: $(STAMP)
	$(PY) run.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest tests bench --benchmark-disable

# the fuzz suite with ten times CI's examples (a few minutes); a failure's shrunk input is saved
# under tests/fuzz/regressions/<parser>/ and replays on every `make test`
fuzz: $(STAMP)
	OTRADE_FUZZ_PROFILE=long $(PY) -m pytest tests/fuzz

bench: $(STAMP)
	$(PY) -m pytest bench --benchmark-only --benchmark-json=bench/results.json --benchmark-save-data
	$(PY) bench/report.py bench/results.json --out BENCHMARKS.md

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache .benchmarks
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
