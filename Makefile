# lfr — two commands on a fresh Debian 12 machine with Python 3.11:
#   make demo   install everything, start the embedded suite, run the demo, stop
#   make test   install everything and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: system-deps install proto proto-check lint test test-fast demo up down status bench clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian's python3 lacks venv until python3-venv is installed; add it when missing.
$(UV):
	@echo "==> bootstrapping uv into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS) 2>/dev/null || { \
	  rm -rf $(TOOLS); echo "==> installing python3-venv (Debian)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(TOOLS); }
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

# Debian packages for the RTSP source test: GStreamer's RTSP server, driven by the system Python.
APT_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

install: $(UV)
	@echo "==> installing the workspace into $(VENV)/ (uv.lock)"
	$(UV) sync --all-packages --frozen

proto: install
	scripts/gen_protos.sh

# CI: the generated code must be what the .proto files produce.
proto-check: install
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && mkdir -p $$tmp/lfr/v1 && \
	  scripts/gen_protos.sh $$tmp >/dev/null 2>&1 && \
	  diff -r -x __init__.py -x __pycache__ $$tmp/lfr/v1 libs/lfr-core/src/lfr/v1 && \
	  echo "==> generated code matches protos/"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: system-deps install proto-check lint
	@echo "==> running the test suite (starts its own Redis and Triton)"
	$(BIN)/pytest -ra

test-fast: install
	$(BIN)/pytest -ra -m "not integration and not e2e"

demo: install
	$(BIN)/lfr demo

up: install
	$(BIN)/lfr up
status:
	$(BIN)/lfr status
down:
	$(BIN)/lfr down

clean:
	rm -rf $(VENV) $(TOOLS) .lfr .pytest_cache .mypy_cache .ruff_cache
