# hostguard — `make run` serves the demo, `make test` runs every check, `make docs` builds the documentation.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: install run password test lint typecheck docs pytest pytest-swapped bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The set-up output ends with the admin's address, user name and password (project/bootstrap.py).
# BIND=127.0.0.1:8001 make run serves on another address (project/gunicorn.conf.py).
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py hostguard_demo
	$(PY) -m project.bootstrap
	$(BIN)/gunicorn --config project/gunicorn.conf.py project.wsgi

# A new password for the demo's superuser `admin`, printed once.
password: install
	$(PY) manage.py migrate --noinput --verbosity 0
	$(PY) -m project.bootstrap --new-password

test: install lint typecheck docs pytest pytest-swapped

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy hostguard

# The documentation site (docs/), warnings as errors: a broken reference fails the build.
docs: install
	$(BIN)/sphinx-build -E -W --keep-going -n -q -b html docs docs/_build/html

pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

# The tests of what follows the tenant model, again with a site's own one (tests/orgs:
# HOSTGUARD_TENANT_MODEL = "orgs.Organization"); its end-to-end tests are in the run above.
SWAPPED_TESTS := tenant_model request_tenant site_testing middleware fast_paths policy deltas models \
	admin audit_admin commands from_allowed_hosts
pytest-swapped:
	$(BIN)/pytest -q --ds=tests.settings_swapped -m "not e2e and not browser" $(SWAPPED_TESTS:%=tests/test_%.py)

# Benchmarks: figures and goals (docs/performance.md). QUICK=1: a smoke run.
bench: install
	$(PY) -m benchmarks $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .mypy_cache .ruff_cache docs/_build
