# Spoke: `make demo` runs the whole stack on embedded defaults; `make test` runs the tests.
SHELL := /bin/bash
VENV := .venv
# Spoke needs Python >= 3.12 (zha-quirks does). Take the first interpreter that really runs and is new enough:
# python3.12/python3.13 on PATH, then pyenv's versions folder, then plain python3.
PYTHON ?= $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3 $$HOME/.pyenv/versions/3.13*/bin/python3 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then echo $$p; break; fi; done)
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean mosquitto

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "Spoke needs Python 3.12 or newer and none was found (tried python3.12, python3.13, ~/.pyenv/versions/3.1[23]*, python3)."; \
		echo "Install one, e.g. 'apt-get install python3.12 python3.12-venv' or 'pyenv install 3.12', then run make again."; \
		exit 1; fi
	@echo "Using $(PYTHON) ($$($(PYTHON) -V))"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spoke demo

# One pytest worker per core: most tests wait on brokers, databases and processes, not the CPU.
test: $(STAMP) mosquitto
	$(VENV)/bin/pytest -n auto $(PYTEST_ARGS)

# The production-path tests run a real Mosquitto; install Debian's package when we can.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
		if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
			echo "Installing mosquitto (the production-path tests need a real broker)"; \
			SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
			$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null || \
			{ $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }; \
		else echo "mosquitto is not installed and cannot be installed here: its tests will be skipped"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy wire hub cloud device_handlers simulators spoke private_files mqtt_tls spoke_logging

bench: $(STAMP)
	$(VENV)/bin/python -m bench.command_latency

clean:
	rm -rf $(VENV) .pytest_cache
