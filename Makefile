# The commands the README names. Everything runs from the project's virtual environment.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install dev test migrate check-ledger clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23" "setuptools<82" wheel
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# The whole platform as local processes against the local RabbitMQ and PostgreSQL.
dev: install
	$(PY) -m deploy.dev

# One-shot migration of every service's schema (services also migrate at start-up).
migrate: install
	$(PY) -m services.common.migrate

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
