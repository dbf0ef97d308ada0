# The commands the README names. Everything runs from the project's virtual environment.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install dev test migrate clean bench-ingest bench-clicks bench-button bench-settlement soak

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

# Benchmarks: each starts what it needs in a private database and virtual host, prints its
# figures and ends with a line starting ratio=.
bench-ingest: install
	PYTHONWARNINGS=ignore $(PY) -m bench.ingest

bench-clicks: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	PYTHONWARNINGS=ignore $(PY) -m bench.clicks

bench-button: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	PYTHONWARNINGS=ignore $(PY) -m bench.button

bench-settlement: install
	PYTHONWARNINGS=ignore $(PY) -m bench.settlement

# The whole platform (python -m deploy.dev) on private RabbitMQ and PostgreSQL instances, under
# mixed traffic with random process kills and a restart of each server, then exact accounting.
SOAK_SECONDS ?= 300
soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) PYTHONWARNINGS=ignore $(PY) -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
