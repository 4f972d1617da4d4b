# The README's two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench worker standin clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m portal.devserver

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

worker: $(STAMP)
	$(BIN)/python -m worker

standin: $(STAMP)
	$(BIN)/python -m stripe_standin --port $${STANDIN_PORT:-12111}

bench: $(STAMP)
	$(BIN)/python -m benchmarks.availability
	$(BIN)/python -m benchmarks.webhooks

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
