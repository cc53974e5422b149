# Every target bootstraps its own virtual environment from nothing but python3
# and the package registries, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.stamp-run
STAMP_DEV := $(VENV)/.stamp-dev
STAMP_BENCH := $(VENV)/.stamp-bench
STAMP_PLOT := $(VENV)/.stamp-plot
STAMP_DOCS := $(VENV)/.stamp-docs
# -X dev turns on the interpreter's debug checks and ResourceWarning is an error; an
# abandoned async generator only shows up as pytest's unraisable-exception warning, which
# must be named to pytest (the interpreter's -W cannot import pytest that early).
PYTHON_FLAGS := -X dev -W error::ResourceWarning
PYTEST_FLAGS := -W error::pytest.PytestUnraisableExceptionWarning

.PHONY: demo serve test lint typecheck pytest bench bench-smoke soak docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(STAMP_PLOT): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,bench,plot]'
	touch $@

$(STAMP_BENCH): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

$(STAMP_DOCS): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[docs,web]'
	touch $@

STAMP_WEB := $(VENV)/.stamp-web

$(STAMP_WEB): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[web,http]'
	touch $@

demo: $(STAMP_RUN)
	$(PY) -m beluga_trio
	@echo "The same over HTTP, with a web page and a Stop button: make serve"

# The gateway demo on http://127.0.0.1:8000/ (Ctrl+C stops); ARGS="--base-url URL --model M"
# proxies a real OpenAI-compatible server.
serve: $(STAMP_WEB)
	$(PY) -m beluga_trio serve $(ARGS)

test: $(STAMP_DEV) pytest lint typecheck

pytest: $(STAMP_DEV)
	$(PY) $(PYTHON_FLAGS) -m pytest $(PYTEST_FLAGS)

# The million-item soak of every stage (minutes; excluded from `make test`).
soak: $(STAMP_DEV)
	$(PY) $(PYTHON_FLAGS) -m pytest $(PYTEST_FLAGS) -m soak tests/test_soak.py

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/flake8-async --enable=ASYNC \
		--transform-async-generator-decorators=stream,bt.stream,beluga_trio.stream \
		$$(git ls-files --cached --others --exclude-standard '*.py')

typecheck: $(STAMP_DEV)
	$(VENV)/bin/mypy
	$(VENV)/bin/pyright

# The full comparison (minutes): writes bench/results/latest.json, the plot and
# docs/performance.md.
bench: $(STAMP_PLOT)
	$(PY) -m bench --write-docs

# A tiny run that only proves the benchmark still works; never a timing claim.
bench-smoke: $(STAMP_BENCH)
	$(PY) -m bench --smoke

# The documentation site, into docs/_build/html: every warning is an error (-W), every
# cross-reference must resolve (-n), and all problems are reported at once (--keep-going).
docs: $(STAMP_DOCS)
	$(VENV)/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache docs/_build
