# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: setup demo test lint types unit integration bench clean

setup:
	bash deploy/bootstrap.sh

demo: setup
	$(VENV)/journey demo --duration $(or $(DURATION),60)

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

types:
	$(VENV)/mypy

test:
	bash deploy/bootstrap.sh --test
	$(MAKE) lint types
	$(VENV)/pytest

unit:
	$(VENV)/pytest tests/unit

integration:
	$(VENV)/pytest tests/integration

# The benchmark (raw aiokafka, naive Faust, the engine) on a real local broker:
# bench/out/report.json and report.md. SCALE=0.1 for a quick, smaller run.
bench: setup
	$(VENV)/python -m tests.bench --out bench/out --scale $(or $(SCALE),1)

clean:
	rm -rf .journey-demo .journey-data bench/out
