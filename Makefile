# prefloop developer commands. `make run` serves the app on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PIN := torch==2.13.0

.PHONY: run test lint bench install install-dev install-worker clean schema

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[worker,dev]'
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev
install-worker: $(VENV)/.core
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[worker]'

## run: install, migrate the SQLite default, seed the demo project and an admin, serve on http://127.0.0.1:8000
run: $(VENV)/.core
	$(VENV)/bin/prefloop db upgrade
	$(VENV)/bin/prefloop demo
	@if $(PY) -c "import torch" 2>/dev/null; then \
		$(VENV)/bin/prefloop serve --with-worker; \
	else \
		echo "(torch not installed: serving without a worker; 'make install-worker' adds it)"; \
		$(VENV)/bin/prefloop serve; \
	fi

## test: the whole suite on SQLite and Postgres (needs a Postgres at 127.0.0.1:5432 and Debian's chromium)
test: $(VENV)/.dev
	$(VENV)/bin/ruff check app worker tests bench
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check app worker tests bench
	$(VENV)/bin/mypy

bench: $(VENV)/.dev
	$(PIP) install -q -e '.[bench]'
	$(PY) bench/export.py --quick
	$(PY) bench/annotate.py --quick
	$(PY) bench/reward_model.py --quick
	$(PY) bench/rm_prefix.py --quick
	$(PY) bench/policy.py --quick
	$(PY) bench/loop.py --quick
	$(PY) bench/active_selection.py --quick

## schema: regenerate the initial migration from the models (before the first release only)
schema: $(VENV)/.core
	rm -f migrations/versions/*_0001_initial_schema.py /tmp/prefloop-schema.db
	$(PY) -c "from alembic import command; from app.migrate import alembic_config; \
	command.revision(alembic_config('sqlite:////tmp/prefloop-schema.db'), message='initial schema', autogenerate=True, rev_id='0001')"
	$(VENV)/bin/ruff format migrations/versions

clean:
	rm -rf $(VENV) data .pytest_cache
