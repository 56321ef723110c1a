# skipexp: `make install` then `make test`. Everything runs inside .venv.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install test test-slow run tensorboard lint bench clean

install:  ## create .venv and install skipexp (CPU torch pinned by constraints.txt) with dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"

test:  ## the fast test suite (slow tests excluded)
	$(BIN)/pytest -q

test-slow:  ## the slow tests only (long CLI runs)
	$(BIN)/pytest -q -m slow

run:  ## train with the defaults; pass overrides with ARGS="model=none depth=50"
	$(BIN)/skipexp $(ARGS)

tensorboard:  ## browse every run under outputs/
	$(BIN)/tensorboard --logdir outputs --port 6006

lint:
	$(BIN)/ruff check skipexp tests bench

bench:  ## performance benchmarks (bench/)
	$(BIN)/python bench/run.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
