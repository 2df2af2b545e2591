# Two entry points for a fresh machine (see README): `make demo` and `make test`.
SHELL := /bin/bash
export FACETRACK_ASSETS ?= $(if $(wildcard $(CURDIR)/../shared/assets),$(CURDIR)/../shared/assets,)

.PHONY: setup demo test lint
setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/facetrack demo

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .
