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
# flake8-async with every rule it enables by default: the slowest static check (~30 s of CPU),
# so it runs as two processes over batches of the files, next to pytest and the type checkers.
# ruff's ASYNC rules cover only some of its codes (docs/contributing.md); both run.
# The project's startable functions (`await nursery.start(publish, ...)`) are listed so that
# ASYNC113 checks their calls and ASYNC114 knows them.
FLAKE8_ASYNC := $(VENV)/bin/flake8-async --enable=ASYNC \
	--transform-async-generator-decorators=stream,bt.stream,beluga_trio.stream \
	--startable-in-context-manager=publish,_publish_reply

.PHONY: demo serve test check lint typecheck mypy pyright pytest pytest-quick memory bench bench-smoke soak docs clean

# The development tools are PEP 735 dependency groups in pyproject.toml (not extras). They are
# installed with uv (pinned; a fraction of pip's time, measured in docs/contributing.md), itself
# installed from the package registry into the virtual environment. --compile-bytecode, as pip
# does: without .pyc files (and with PYTHONDONTWRITEBYTECODE set) every Python process of the
# tests and checkers would compile its imports again (about 1 CPU second each).
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
INSTALL := $(UV) pip install --quiet --compile-bytecode --python $(PY)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(UV): | $(PY)
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'

$(STAMP_RUN): pyproject.toml | $(UV)
	$(INSTALL) -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(UV)
	$(INSTALL) -e '.[http,web,redis]' --group dev
	touch $@

$(STAMP_PLOT): pyproject.toml | $(UV)
	$(INSTALL) -e '.[http,web,redis]' --group dev --group bench --group plot
	touch $@

$(STAMP_BENCH): pyproject.toml | $(UV)
	$(INSTALL) -e '.[http,web,redis]' --group dev --group bench
	touch $@

$(STAMP_DOCS): pyproject.toml | $(UV)
	$(INSTALL) -e '.[web]' --group docs
	touch $@

STAMP_WEB := $(VENV)/.stamp-web

$(STAMP_WEB): pyproject.toml | $(UV)
	$(INSTALL) -e '.[web,http]'
	touch $@

demo: $(STAMP_RUN)
	$(PY) -m beluga_trio
	@echo "The same over HTTP, with a web page and a Stop button: make serve"

# The gateway demo on http://127.0.0.1:8000/ (Ctrl+C stops); ARGS="--base-url URL --model M"
# proxies a real OpenAI-compatible server.
serve: $(STAMP_WEB)
	$(PY) -m beluga_trio serve $(ARGS)

# Everything: the tests and every static check, run side by side (each prints when done).
test: $(STAMP_DEV)
	@$(MAKE) --no-print-directory -j 3 --output-sync=target pytest lint typecheck

# The edit loop (about a third of the CPU of `make test`): ruff, mypy and the tests stopping at
# the first failure, with fewer hypothesis examples; flake8-async and pyright are left to
# `make test`.
check: $(STAMP_DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@$(MAKE) --no-print-directory -j 2 --output-sync=target mypy pytest-quick

pytest: $(STAMP_DEV)
	$(PY) $(PYTHON_FLAGS) -m pytest $(PYTEST_FLAGS)

pytest-quick: $(STAMP_DEV)
	$(PY) $(PYTHON_FLAGS) -m pytest $(PYTEST_FLAGS) -q -x --hypothesis-profile=quick

# The million-item soak of every stage and the full memory proof (minutes; not in `make test`).
soak: $(STAMP_DEV)
	$(PY) $(PYTHON_FLAGS) -m pytest $(PYTEST_FLAGS) -m soak tests/test_soak.py tests/test_memory.py

# The full memory proof alone (1,000,000 items under tracemalloc, about a minute); .ci/run.
memory: $(STAMP_DEV)
	$(PY) $(PYTHON_FLAGS) -m pytest $(PYTEST_FLAGS) -m soak tests/test_memory.py

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	git ls-files -z --cached --others --exclude-standard '*.py' | xargs -0 -n 30 -P 2 $(FLAKE8_ASYNC)

typecheck: mypy pyright

mypy: $(STAMP_DEV)
	$(VENV)/bin/mypy

pyright: $(STAMP_DEV)
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
