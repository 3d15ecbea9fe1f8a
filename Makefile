# didit_channels — make demo | make test | make lint | make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DEMO_ENV := DJANGO_DEBUG=$${DJANGO_DEBUG:-1}

.PHONY: demo test lint format bench serve-multi wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.demo-installed

# A webhook secret of the demo's own, made once and kept out of git.
.demo-secret: | $(BIN)/python
	$(BIN)/python -c "import secrets; print(secrets.token_urlsafe(32))" > $@

demo: $(VENV)/.demo-installed .demo-secret
	@export $(DEMO_ENV) DIDIT_WEBHOOK_SECRET="$${DIDIT_WEBHOOK_SECRET:-$$(cat .demo-secret)}"; \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py didit_seed_demo && \
	echo "" && \
	echo "  didit_channels demo on http://127.0.0.1:$(PORT)/" && \
	echo "    home           http://127.0.0.1:$(PORT)/" && \
	echo "    status page    http://127.0.0.1:$(PORT)/didit/status/   (alice/alice, bob/bob)" && \
	echo "    admin          http://127.0.0.1:$(PORT)/admin/          (admin/admin)" && \
	echo "    webhook        http://127.0.0.1:$(PORT)/didit/webhook/" && \
	echo "    socket         ws://127.0.0.1:$(PORT)/ws/didit/" && \
	echo "    webhook secret $$DIDIT_WEBHOOK_SECRET" && \
	echo "" && \
	exec $(BIN)/daphne -b 127.0.0.1 -p $(PORT) project.asgi:application

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.test-installed
	$(BIN)/python -m bench

# N daphne processes behind one nginx on PORT, sharing REDIS_URL (required) and
# DATABASE_URL: `REDIS_URL=redis://127.0.0.1:6379/0 make serve-multi N=3`.
# Installs Debian's nginx-light when missing and run as root (docs/readme/scale.md).
N ?= 3
serve-multi: $(VENV)/.demo-installed .demo-secret
	@test -n "$$REDIS_URL" || { echo "serve-multi: set REDIS_URL (processes share the layer)"; exit 2; }
	@export $(DEMO_ENV) DIDIT_WEBHOOK_SECRET="$${DIDIT_WEBHOOK_SECRET:-$$(cat .demo-secret)}"; \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py didit_seed_demo && \
	echo "    webhook secret $$DIDIT_WEBHOOK_SECRET" && \
	exec $(BIN)/python scripts/serve_multi.py -n $(N) --port $(PORT) --install-nginx

# Build the app's wheel and list what it carries (migrations, templates, static).
wheel-check: $(VENV)/.test-installed
	rm -rf build/wheel && $(BIN)/python -m build --wheel --outdir build/wheel . >/dev/null
	$(BIN)/python -m zipfile -l build/wheel/*.whl | grep -E 'migrations/|templates/|static/'

clean:
	rm -rf $(VENV) build dist *.egg-info db.sqlite3* .test-db.sqlite3* .demo-secret
