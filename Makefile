# The two commands of the README. Both bootstrap what they need first (idempotent, seconds when ready).
.PHONY: demo test bootstrap

VENV ?= .venv

demo:
	scripts/bootstrap.sh
	$(VENV)/bin/semhpc demo

test:
	scripts/bootstrap.sh --test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

bootstrap:
	scripts/bootstrap.sh
