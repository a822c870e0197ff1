PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo

.PHONY: venv install dev demo test lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/pip install -q -e '.[examples]'

dev: venv
	$(BIN)/pip install -q -e '.[dev,examples]'

demo: install
	rm -rf $(RUN_DIR)
	$(BIN)/evoforge run examples/circle_packing --run-dir $(RUN_DIR) --llm offline --trials 40 --concurrency 2 --seed 0
	$(BIN)/evoforge best $(RUN_DIR)
	@echo "Record: $(RUN_DIR)/record.db   (try: $(BIN)/evoforge status $(RUN_DIR); $(BIN)/evoforge export $(RUN_DIR) --format jsonl)"

test: dev
	$(BIN)/ruff check evoforge tests examples
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check evoforge tests benchmarks examples

clean:
	rm -rf $(VENV) runs build *.egg-info
