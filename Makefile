# The two commands a new user needs: `make run` (the demo) and `make test` (every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test test-fast bench install lint format lock clean messages

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# The demo: SQLite and a folder-based broker under var/, no server to install.
# `make run DEMO_FEED=1` also runs the Procfile's feed: an approval every few seconds.
run: export DEBUG ?= true
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile \
		$(if $(filter-out 0 false,$(DEMO_FEED)),,-c feed=0)

# Tests marked postgres_only need PostgreSQL: on any other database they are left out by
# selection (reported as deselected), never skipped; CI runs them in its PostgreSQL pass.
POSTGRES_ONLY := $(if $(filter postgres%,$(DATABASE_URL)),,-m "not postgres_only")

# Every test. CI sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis);
# without them the suite runs on SQLite and the folder broker under var/test.
test: export DEBUG ?= true
test: export VAR_DIR ?= $(CURDIR)/var/test
test: install
	bash scripts/ensure-chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(POSTGRES_ONLY) $(PYTEST_ARGS)

# The tests a change is checked with while working: no Chromium, no Celery worker, none of
# the few that take over 2 s on their own (the `slow` marker, pyproject.toml). `make test`
# before pushing still runs every one.
test-fast: export DEBUG ?= true
test-fast: export VAR_DIR ?= $(CURDIR)/var/test
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest -m "not slow and not browser and not worker and not postgres_only" $(PYTEST_ARGS)

# How fast a sync sends next to the ERP sandbox's raw capacity, how fast the pages answer
# with 500 organizations and 1,000,000 sync_logs rows, the audit log's pages and exports,
# the platform night (200 organizations x 500 records at the ERP's limit, two workers) and
# the recovery from a killed worker (needs PostgreSQL:
# DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench; uses a test database;
# the night and the recovery need Redis too: BENCH_REDIS_URL, default
# redis://127.0.0.1:6379/11, which they purge).
bench: export DEBUG ?= true
bench: export VAR_DIR ?= $(CURDIR)/var/bench
bench: install
	rm -rf $(VAR_DIR)/bench-results
	$(BIN)/python bench/sync_bench.py $(BENCH_ARGS)
	@for bench in pages audit ops inbound reconcile night recover; do \
		test ! -f bench/$${bench}_bench.py || $(BIN)/python bench/$${bench}_bench.py || exit 1; \
	done
	$(BIN)/python bench/summary.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Gather the translatable strings into the Norwegian catalog and compile it (needs GNU
# gettext). Translate what is new or fuzzy in locale/nb/LC_MESSAGES/django.po, run this
# again, and commit the .po and the .mo together: `make run` needs only Python.
messages: export DEBUG ?= true
messages: install
	$(BIN)/python manage.py makemessages -l nb --no-obsolete --add-location=file \
		--ignore=.venv --ignore=var --ignore=tests --ignore=bench --ignore=staticfiles
	$(BIN)/python manage.py compilemessages --ignore=.venv

# Re-pin every dependency after changing pyproject.toml.
lock: install
	$(BIN)/pip-compile --quiet --extra dev --extra demo --strip-extras --no-header \
		--output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) var
