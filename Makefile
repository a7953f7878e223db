# Mailkeep. `make run` serves the dashboard; `make test` runs every test; `make demo` shows it against
# real servers. Each sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 2
# More threads than connection-test slots (8), so a busy worker can still answer "try again".
THREADS ?= 16

.PHONY: run test demo system-packages

# The access log names each request's path without its query: an OAuth2 sign-in's callback carries the
# authorization code there (gunicorn's default format, but %(U)s for the request line's %(r)s).
ACCESS_LOG_FORMAT := %(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"

# The web server and the background worker (scheduled checks, notifications), started together; Ctrl-C (or
# either of them ending) stops both.
run: $(VENV)/.installed
	@echo "Mailkeep: http://$(HOST):$(PORT)/ and its worker  (Ctrl-C stops both)"
	@$(VENV)/bin/python worker.py & worker=$$!; \
	trap 'kill -INT $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(VENV)/bin/gunicorn --preload --workers $(WORKERS) --threads $(THREADS) --bind $(HOST):$(PORT) \
		--no-control-socket --access-logfile - --access-logformat '$(ACCESS_LOG_FORMAT)' 'app:create_app()'

# The project's modules compiled first (pip compiles the installed ones): where PYTHONDONTWRITEBYTECODE is set,
# every Python process a test starts (the test workers, gunicorn, the worker, the command line) would
# otherwise compile them again on import.
test: $(VENV)/.installed-test system-packages
	$(VENV)/bin/python -m compileall -q -x '/(\.venv|\.git)/' . > /dev/null
	$(VENV)/bin/python -m pytest

# A throwaway Dovecot and OAuth2 endpoint, and the dashboard seeded to test against them.
demo: $(VENV)/.installed system-packages
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/python demo.py

# Benchmarks, not part of make test: how long a connection test takes against the bare IMAP exchange it
# performs (in process and through gunicorn, on loopback and behind a proxy adding 20 ms each way; writes
# bench/connection_test.md), and the lists at 10,000 and 100,000 credentials on SQLite and PostgreSQL
# against a bare page of the same rows (writes bench/list.md); scheduled checks of 1,000 credentials against the
# test Dovecot (writes bench/checks.md).
.PHONY: bench
bench: $(VENV)/.installed system-packages
	$(VENV)/bin/python bench/connection_test.py
	$(VENV)/bin/python bench/list.py
	$(VENV)/bin/python bench/checks.py

$(VENV)/bin/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(call apt_install,python3-venv)
	$(PYTHON) -m venv $(VENV)

# Installed without pip compiling each file in turn, then compiled on every core at once (byte code matters
# here: where PYTHONDONTWRITEBYTECODE is set, nothing is compiled on import for next time).
PIP_INSTALL := $(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile
COMPILE_VENV := $(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib > /dev/null

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements.txt
	$(COMPILE_VENV)
	touch $@

# make test installs both lists in one go (one resolution), which also makes what make run needs.
$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements.txt -r requirements-test.txt
	$(COMPILE_VENV)
	touch $(VENV)/.installed $@

# Dovecot, Chromium, PostgreSQL and Redis come from Debian; without them the tests skip (or fail under CI=true).
system-packages:
	@missing=""; \
	[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || missing="$$missing dovecot-imapd"; \
	[ -x /usr/lib/dovecot/pop3 ] || missing="$$missing dovecot-pop3d"; \
	[ -x /usr/lib/chromium/chromium-headless-shell ] || missing="$$missing chromium-headless-shell"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then $(call apt_install,$$missing); fi

# apt-get install the given packages as root; otherwise say what to install and go on.
define apt_install
if [ "$$(id -u)" = 0 ]; then \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
else \
	echo "Not root, so not installing:$(1). Run: sudo apt-get install$(1)"; \
fi
endef
