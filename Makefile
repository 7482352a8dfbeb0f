# The two commands README.md promises on a fresh machine:
#   make demo   bring up a cluster and solve a bundled example (local solver when no Docker engine)
#   make test   the full test suite (unit + Docker integration); CI=true turns any skip into a failure
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test test-fast lint bench clean

# The demo needs sorctl alone; tests, lint and benchmarks add the dev tools (a stamp file says
# they are in).
$(BIN)/sorctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.dev: $(BIN)/sorctl
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.dev

demo: $(BIN)/sorctl
	./scripts/demo.sh

test: venv
	./scripts/test.sh

test-fast: venv
	$(BIN)/pytest -m 'not docker and not browser' -q

lint: venv
	$(BIN)/ruff check sorctl tests bench scripts
	$(BIN)/ruff format --check sorctl tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python bench/bench_kernels.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
