# The commands the README names. Everything runs from the project's virtual environment.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install dev test test-cluster test-openapi migrate clean bench-ingest bench-clicks bench-button bench-settlement bench-broker bench-partitions soak

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23" "setuptools<82" wheel
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# axe-core for the browser journey's accessibility check, pinned in tests/browser/package-lock.json
tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed tests/browser/node_modules/.installed

# The whole platform as local processes against the local RabbitMQ and PostgreSQL.
dev: install
	$(PY) -m deploy.dev

# One-shot migration of every service's schema (services also migrate at start-up).
migrate: install
	$(PY) -m services.common.migrate

# The suite runs on every core (pytest-xdist: one worker process per core, each with its own
# databases and virtual hosts; tests/faults keeps each module on one worker). TEST_WORKERS=0 runs
# it in one process. Exit code 5 (no test collected) fails the target with a message.
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit code 5)" >&2; fi; exit $$rc

# The platform on a private three-node RabbitMQ cluster with quorum queues (tests/faults/test_cluster.py):
# a node crashed, a node frozen (SIGSTOP), each with a minute of traffic; make test runs the crash only, shorter.
test-cluster: install
	CLUSTER_TEST=full $(PY) -m pytest tests/faults/test_cluster.py -s $(PYTEST_ARGS)

# The gateway fuzzed against its OpenAPI document with more generated cases per operation than make test's 6.
test-openapi: install
	OPENAPI_FUZZ_EXAMPLES=25 $(PY) -m pytest tests/gateway/test_openapi.py $(PYTEST_ARGS)

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

# the clicks table's partitions at a scale: the upgrade that makes them, a period's archive, the click path meanwhile
bench-partitions: install
	PYTHONWARNINGS=ignore $(PY) -m bench.partitions

# RPC and event latency with classic and with quorum queues on the local RabbitMQ (private virtual hosts)
bench-broker: install
	PYTHONWARNINGS=ignore $(PY) -m bench.broker

# The whole platform (python -m deploy.dev) on private RabbitMQ and PostgreSQL instances, under
# mixed traffic with random process kills and a restart of each server, then exact accounting.
SOAK_SECONDS ?= 300
soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) PYTHONWARNINGS=ignore $(PY) -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tests/browser/node_modules
