# The README's two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# `make test-dates` runs the date-sensitive tests again with the tests' clock pinned (PORTAL_TEST_NOW, see
# tests/conftest.py) to: a Monday; a Saturday evening in New York, already Sunday in UTC; the Sunday the US clocks go
# forward, just after 2 a.m. in New York; the Sunday they go back, inside the repeated hour (1:30 a.m. EST).
TEST_DATES := 2027-01-04T14:00:00+00:00 2026-12-05T23:30:00-05:00 2027-03-14T06:30:00+00:00 2026-11-01T06:30:00+00:00
DATE_SENSITIVE_TESTS := tests/lessons tests/calendar tests/notifications tests/unit tests/series tests/credits
# The admin and ops tests build dates from the clock too: they run again on the spring-forward Sunday.
MORE_DATE_TESTS := tests/admin tests/ops
MORE_DATES_AT := 2027-03-14T06:30:00+00:00
TEST_REDIS_BASE ?= redis://127.0.0.1:6379
# `make test` runs the suite in this many processes at once (pytest-xdist; each its own Redis database, see
# tests/conftest.py); TEST_PROCESSES=0 runs it in one, as a debugger wants.
TEST_PROCESSES ?= 2

.PHONY: run test test-dates test-dates-early test-dates-late bench worker standin clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m portal.devserver

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

# Two lanes run at once (each with its own Redis database, `TEST_REDIS_URL`), their output kept apart.
test-dates: $(STAMP)
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-dates-early test-dates-late

test-dates-early: $(STAMP)
	@set -e; for now in $(wordlist 1,3,$(TEST_DATES)); do \
		echo "==> the date-sensitive tests at PORTAL_TEST_NOW=$$now"; \
		TEST_REDIS_URL=$(TEST_REDIS_BASE)/13 PORTAL_TEST_NOW=$$now \
			$(BIN)/python -m pytest -q -p no:cacheprovider $(DATE_SENSITIVE_TESTS) $(PYTEST_ARGS); \
	done

test-dates-late: $(STAMP)
	@set -e; for now in $(wordlist 4,9,$(TEST_DATES)); do \
		echo "==> the date-sensitive tests at PORTAL_TEST_NOW=$$now"; \
		TEST_REDIS_URL=$(TEST_REDIS_BASE)/14 PORTAL_TEST_NOW=$$now \
			$(BIN)/python -m pytest -q -p no:cacheprovider $(DATE_SENSITIVE_TESTS) $(PYTEST_ARGS); \
	done; \
	echo "==> the admin and ops tests at PORTAL_TEST_NOW=$(MORE_DATES_AT)"; \
	TEST_REDIS_URL=$(TEST_REDIS_BASE)/14 PORTAL_TEST_NOW=$(MORE_DATES_AT) \
		$(BIN)/python -m pytest -q -p no:cacheprovider $(MORE_DATE_TESTS) $(PYTEST_ARGS)

worker: $(STAMP)
	$(BIN)/python -m worker

standin: $(STAMP)
	$(BIN)/python -m stripe_standin --port $${STANDIN_PORT:-12111}

bench: $(STAMP)
	$(BIN)/python -m benchmarks.http_paths
	$(BIN)/python -m benchmarks.availability
	$(BIN)/python -m benchmarks.webhooks
	$(BIN)/python -m benchmarks.reconciliation
	$(BIN)/python -m benchmarks.configuration
	$(BIN)/python -m benchmarks.series
	$(BIN)/python -m benchmarks.metrics_scrape

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
