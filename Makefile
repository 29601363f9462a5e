# One target runs what CI runs: lint, format check, types, tests.
.PHONY: check lint types test format

check: lint types test

lint:
	ruff check .
	ruff format --check .

types:
	mypy

test:
	pytest

format:
	ruff format .
	ruff check --fix .
