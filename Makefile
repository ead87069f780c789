# vcc: `make demo` mines the generated demo corpus end to end; `make test` runs the tests.
# Both create .venv and install everything they need on a fresh machine with Python 3.11.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: help install chromium demo test test-all lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the project and its tools

# Debian's chromium and its matching chromedriver, for the HTML report's browser test; apt runs
# only when they are missing (as root, else through sudo)
CHROMIUM_STAMP := $(VENV)/.chromium
$(CHROMIUM_STAMP):
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium: /usr/bin/chromium and /usr/bin/chromedriver are installed"; \
	else \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver fonts-liberation; \
	fi
	mkdir -p $(VENV) && touch $@

chromium: $(CHROMIUM_STAMP)  ## install Debian's chromium + chromedriver (the report's browser test)

demo: $(STAMP)  ## generate the demo corpus offline, mine it, print precision/recall/purity
	$(BIN)/vcc demo --out $(DEMO_OUT)

test: $(STAMP) $(CHROMIUM_STAMP)  ## the test suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP) $(CHROMIUM_STAMP)  ## every test, slow ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## run the benchmarks; see bench/RESULTS.md
	$(BIN)/python bench/run_all.py

clean:  ## remove outputs (keeps .venv)
	rm -rf $(DEMO_OUT) .pytest_cache bench/out
