# Newcomer path: `make run` (whole service in the foreground) and `make test` (whole suite).
# Both install what is missing first: a virtualenv in .venv with the locked dependencies
# (requirements-dev.txt, hash-checked) and the package itself, and a redis-server (and, for `make test`,
# promtool from Debian's prometheus) from the system package manager when none is on PATH.
# `make lock` (maintainers, needs the network) recompiles requirements.txt and requirements-dev.txt from
# pyproject.toml.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# The lock: what Heroku's buildpack installs (requirements.txt) and what make and CI install (requirements-dev.txt).
LOCK_TOOLS := $(VENV)/lock-tools
UV_VERSION ?= 0.13.9
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes
UPGRADE ?=

.PHONY: run test bench soak lint deps lock system-redis system-wrk system-promtool system-chromium clean

run: deps system-redis
	$(BIN)/python -m webhook_service.devserver

# Lint first (ruff, formatting, mypy strict: a few seconds), then the suite.
test: lint system-redis system-promtool system-chromium
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

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Runtime pins first (from pyproject.toml alone), then runtime + the dev extra held to those same pins.
# Existing pins are kept unless pyproject.toml needs otherwise; `make lock UPGRADE=1` moves everything to the
# newest allowed. uv lives in its own virtualenv so that .venv holds exactly the lock.
lock:
	test -x $(LOCK_TOOLS)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
	  $(LOCK_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(LOCK_TOOLS)/bin/uv pip compile --quiet pyproject.toml $(LOCK_TARGET) $(if $(UPGRADE),--upgrade) -o requirements.txt
	$(LOCK_TOOLS)/bin/uv pip compile --quiet pyproject.toml --extra dev -c requirements.txt $(LOCK_TARGET) $(if $(UPGRADE),--upgrade) -o requirements-dev.txt
	sed -i '1i # Locked from pyproject.toml for Linux x86_64, Python 3.11: regenerate with `make lock`, never by hand.' \
	  requirements.txt requirements-dev.txt

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
