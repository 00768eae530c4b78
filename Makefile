# Trident: `make serve` runs the stack, `make test` passes the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8080

.PHONY: install serve test lint clean

install: $(STAMP)

# torch first, alone: `torch==2.13.0` is the CPU build (an open range would pull a multi-GB CUDA one).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[build,dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/trident serve --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf .trident .pytest_cache .ruff_cache
