# Conduit: `make run` brings the product up; `make test` is what CI runs.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest pytest-pgbouncer bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "conduit: $(PY) not found; install Python 3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $(STAMP)

run: $(STAMP)
	@$(BIN)/python manage.py migrate --noinput -v 0
	@$(BIN)/python manage.py collectstatic --noinput -v 0
	@$(BIN)/python manage.py seed_demo --url http://127.0.0.1:$(PORT)/
	@$(BIN)/python manage.py clear_metrics
	@echo "Starting web (gunicorn), worker with beat (celery -B) and the sandbox CRMs and calendars; Ctrl-C stops everything."
	@echo "The login is printed again (announce) once Conduit answers, and once beat is fresh."
	@PORT=$(PORT) CONDUIT_WEB_URL=http://127.0.0.1:$(PORT)/ CONDUIT_PUBLIC_URL=$${CONDUIT_PUBLIC_URL:-http://127.0.0.1:$(PORT)} exec $(BIN)/honcho start -f Procfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy conduit integrations reconcile retention

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# Ingest, planning, delivery, purge, webhooks and RLS through Debian's pgbouncer in transaction
# pooling (docs/deployment.md, "Behind PgBouncer"); needs DATABASE_URL naming a Postgres server.
# .ci/run runs it after `make test`.
pytest-pgbouncer: $(STAMP)
	bash ops/pgbouncer/pytest.sh

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/limiter.py
	DATABASE_URL=$${DATABASE_URL:-$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}} $(BIN)/python bench/reconcile.py
	DATABASE_URL=$${DATABASE_URL:-$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}} $(BIN)/python bench/purge.py
	DATABASE_URL=$${DATABASE_URL:-$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}} $(BIN)/python bench/health.py
	DATABASE_URL=$${DATABASE_URL:-$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}} $(BIN)/python bench/webhooks.py
	DATABASE_URL=$${DATABASE_URL:-$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}} $(BIN)/python bench/scopes.py
	DATABASE_URL=$${DATABASE_URL:-$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}} $(BIN)/python bench/calendar_sync.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
