# hostguard — `make run` serves the demo, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: install run test lint typecheck pytest bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py hostguard_demo
	$(PY) -m project.bootstrap
	$(BIN)/gunicorn --config project/gunicorn.conf.py project.wsgi

test: install lint typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy hostguard

pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

# Benchmarks: figures and goals (README "Performance"). QUICK=1: a smoke run.
bench: install
	$(PY) -m benchmarks $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .mypy_cache .ruff_cache
