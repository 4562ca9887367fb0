# prefloop developer commands. `make run` serves the whole product on SQLite, worker included;
# `make test` runs the whole suite. Every install reads requirements/lock.txt as pip constraints.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
LOCK := requirements/lock.txt
INSTALL := $(PIP) install -q -c $(LOCK)
TORCH_PIN := torch==2.13.0
# Where torch comes from. On a machine without an NVIDIA GPU, `make run TORCH_INDEX=https://download.pytorch.org/whl/cpu`
# takes the CPU build (about 200 MB) instead of PyPI's default CUDA build (several GB).
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# `make run WORKER=0` serves without the worker (and without installing torch).
WORKER ?= 1
FLOORS_VENV := .venv-floors
# What `make floors` runs on the declared minimum versions: the web app, imports/exports, the job queue,
# reward-model training with prefix sharing, sampling, checkpoints and the tiny models.
FLOOR_SMOKE := tests/cli tests/auth tests/web/test_limits_and_health.py tests/web/test_navigation.py \
	tests/imports tests/exports tests/labeling/test_submission.py tests/jobs tests/training/reward \
	tests/training/test_tiny.py tests/training/test_checkpoint.py tests/training/policy/test_policy_sampling.py \
	tests/test_migrations.py

.PHONY: run test preflight lint bench install install-dev install-worker floors floors-lock lock clean schema

$(VENV)/.base: $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$$(grep -i '^pip==' $(LOCK))"
	touch $@

$(VENV)/.core: $(VENV)/.base pyproject.toml
	$(INSTALL) -e .
	touch $@

# torch first, by its exact pin: a looser request would pull the newest (CUDA) build.
$(VENV)/.worker: $(VENV)/.core
	$(INSTALL) $(TORCH_FROM) $(TORCH_PIN)
	$(INSTALL) -e '.[worker]'
	touch $@

$(VENV)/.dev: $(VENV)/.worker
	$(INSTALL) -e '.[worker,dev,lora]'
	touch $@

install: $(VENV)/.core
install-worker: $(VENV)/.worker
install-dev: $(VENV)/.dev

## run: install (worker included), migrate the SQLite default, seed the demo project and an admin, serve on :8000
# `make run` is the dev setup (a generated secret, no Secure cookie); without PREFLOOP_ENV prefloop is production.
run: export PREFLOOP_ENV ?= dev
ifeq ($(WORKER),0)
run: $(VENV)/.core
	$(VENV)/bin/prefloop db upgrade
	$(VENV)/bin/prefloop demo
	$(VENV)/bin/prefloop serve
else
run: $(VENV)/.worker
	$(VENV)/bin/prefloop db upgrade
	$(VENV)/bin/prefloop demo
	$(VENV)/bin/prefloop serve --with-worker
endif

## preflight: what the suite needs from the machine (chromium, Postgres, ../shared/data), in one line each
preflight:
	@$(PYTHON) tests/preflight.py

## test: the whole suite on SQLite and Postgres, browser tests in headless Chromium
test: preflight $(VENV)/.dev
	$(VENV)/bin/ruff check app worker tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check app worker tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

## floors: install the declared minimum of every runtime dependency (requirements/floors.txt) and run a smoke subset
floors: preflight
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/pip install -q "$$(grep -i '^pip==' requirements/floors.txt)"
	$(FLOORS_VENV)/bin/pip install -q -r requirements/floors.txt
	$(FLOORS_VENV)/bin/pip install -q --no-deps -e .
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider $(FLOOR_SMOKE)

## lock / floors-lock: re-resolve requirements/lock.txt (newest allowed versions) or requirements/floors.txt
lock:
	bash requirements/refresh-lock.sh
floors-lock:
	bash requirements/refresh-floors.sh

bench: $(VENV)/.dev
	$(INSTALL) -e '.[bench]'
	$(PY) bench/export.py --quick
	$(PY) bench/annotate.py --quick
	$(PY) bench/claim.py --quick
	$(PY) bench/reward_model.py --quick
	$(PY) bench/rm_quality.py --quick
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
	rm -rf $(VENV) $(FLOORS_VENV) data .pytest_cache
