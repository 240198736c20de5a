# prefect-trigger — developer commands. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv lint test test-unit test-long test-compat demo bench image gateway-image clean

help:
	@echo "make demo       run the pipe against a throwaway local Prefect server"
	@echo "make test       lint + the whole test suite (unit, real Prefect server, container image)"
	@echo "make test-unit  the tests that need no Prefect server and no Docker engine (seconds)"
	@echo "make lint       ruff (lint + format check) and mypy --strict"
	@echo "make test-long  the long fault-injection tier"
	@echo "make test-compat the pipe against old Prefect servers (installed by .ci/compat-setup)"
	@echo "make bench      waiting/latency benchmark against the Prefect CLI and run_deployment"
	@echo "make image      build the Docker image"
	@echo "make gateway-image  build the gateway's Docker image (target gateway)"

$(STAMP): requirements.txt requirements-dev.txt gateway/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r gateway/requirements.txt
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check pipe gateway tests $(wildcard bench)
	$(VENV)/bin/ruff format --check pipe gateway tests $(wildcard bench)
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest -m "not prefect and not container and not compat"

test-long: venv
	$(PY) -m pytest -m long --run-long

test-compat: venv
	.ci/compat-setup
	$(PY) -m pytest -m compat tests/compat

demo: venv
	$(PY) -m tests.demo

bench: venv
	$(PY) -m bench

# Tagged as the README's commands name it (org/prefect-trigger:<version>) and as prefect-trigger:dev.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' pipe/__init__.py)

image:
	docker build --network host --build-arg BASE_IMAGE=$$(.ci/docker-setup) -t prefect-trigger:dev -t org/prefect-trigger:$(VERSION) .

gateway-image:
	docker build --network host --build-arg BASE_IMAGE=$$(.ci/docker-setup) --target gateway -t prefect-trigger-gateway:dev .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
