# Newcomer path: `make run` (whole service in the foreground) and `make test` (whole suite).
# Both install what is missing first: a virtualenv in .venv with the package and its extras, and a
# redis-server (and, for `make test`, promtool from Debian's prometheus) from the system package manager when
# none is on PATH.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test bench soak lint deps system-redis system-wrk system-promtool system-chromium clean

run: deps system-redis
	$(BIN)/python -m webhook_service.devserver

test: deps system-redis system-promtool system-chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: deps system-redis system-wrk
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/bounded.py
	$(BIN)/python bench/fleet.py

# The chaos ledger: two dozen recordings under Agora and process faults, then an audit (a few minutes).
soak: deps system-redis
	$(BIN)/python bench/soak.py

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

deps: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# System packages come from apt-get (as root, or through sudo) when the command is missing.
define apt_install
	@if ! command -v $(1) >/dev/null 2>&1; then \
	  echo "installing $(2) (apt-get)"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get here: please install $(2) yourself" >&2; exit 1; }; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(2) >/dev/null; \
	fi
endef

system-redis:
	$(call apt_install,redis-server,redis-server)

system-wrk:
	$(call apt_install,wrk,wrk)

# promtool checks deploy/prometheus/alerts.yml in the test suite.
system-promtool:
	$(call apt_install,promtool,prometheus)

# The dashboard's browser tests drive Debian's chromium through its chromedriver (nothing downloaded at run time).
system-chromium:
	$(call apt_install,chromium,chromium)
	$(call apt_install,chromedriver,chromium-driver)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
