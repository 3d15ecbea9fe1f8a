# didit_channels — make demo | make test | make lint | make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DEMO_ENV := DJANGO_DEBUG=$${DJANGO_DEBUG:-1}

.PHONY: demo demo-tls test lint format bench serve-multi wheel-check clean

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

# The demo over https and wss on PORT_TLS, with daphne's own TLS endpoint and a
# self-signed certificate made on first run into demo-tls/ (git-ignored).
# DJANGO_TLS=1: secure cookies, SSL redirect; SSL_CERT_FILE lets the server's
# own HTTPS client (Simulate Didit) trust the certificate (docs/readme/tls-and-openapi.md).
PORT_TLS ?= 8443
TLS_DIR := demo-tls
demo-tls: $(VENV)/.demo-installed .demo-secret
	@export $(DEMO_ENV) DJANGO_TLS=1 SSL_CERT_FILE="$(CURDIR)/$(TLS_DIR)/trust.pem" \
	  DIDIT_WEBHOOK_SECRET="$${DIDIT_WEBHOOK_SECRET:-$$(cat .demo-secret)}"; \
	$(BIN)/python scripts/make_dev_cert.py --dir $(TLS_DIR) && \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py didit_seed_demo && \
	echo "" && \
	echo "  didit_channels demo on https://127.0.0.1:$(PORT_TLS)/ (TLS)" && \
	echo "    home           https://127.0.0.1:$(PORT_TLS)/" && \
	echo "    status page    https://127.0.0.1:$(PORT_TLS)/didit/status/   (alice/alice, bob/bob)" && \
	echo "    admin          https://127.0.0.1:$(PORT_TLS)/admin/          (admin/admin)" && \
	echo "    webhook        https://127.0.0.1:$(PORT_TLS)/didit/webhook/" && \
	echo "    socket         wss://127.0.0.1:$(PORT_TLS)/ws/didit/" && \
	echo "    API schema     https://127.0.0.1:$(PORT_TLS)/didit/api/schema/" && \
	echo "    certificate    $(TLS_DIR)/cert.pem  (self-signed: accept it in the browser, or" && \
	echo "                   curl --cacert $(TLS_DIR)/cert.pem https://127.0.0.1:$(PORT_TLS)/)" && \
	echo "    webhook secret $$DIDIT_WEBHOOK_SECRET" && \
	echo "" && \
	exec $(BIN)/daphne -e "ssl:$(PORT_TLS):privateKey=$(TLS_DIR)/key.pem:certKey=$(TLS_DIR)/cert.pem:interface=127.0.0.1" \
	  project.asgi:application

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
