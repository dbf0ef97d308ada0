"""Fixtures for fault-injection tests: private RabbitMQ and PostgreSQL servers a test may break.

``private_rabbit`` and ``private_postgres`` are started once per test module (starting RabbitMQ
takes a few seconds) and always removed at the end of the module, even after failures. Each test
gets them running: if an earlier test left one stopped or crashed, it is started again (on the
same data) before the next test. Tests share the servers within a module, so each should use its
own queue and database names (``private_postgres.create_database()`` makes a fresh database).
"""
from pathlib import Path

import pytest

from testsupport.instances import PrivatePostgres, PrivateRabbit


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``--dist loadgroup``) each module's tests run on one worker, so its
    private servers start once, not once per worker."""
    for item in items:
        if item.path.parent == Path(__file__).parent:
            item.add_marker(pytest.mark.xdist_group(f"faults-{item.path.stem}"))


@pytest.fixture(scope="module")
def _private_rabbit_server():
    rabbit = PrivateRabbit()
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.cleanup()


@pytest.fixture(scope="module")
def _private_postgres_server():
    postgres = PrivatePostgres()
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.cleanup()


@pytest.fixture
def private_rabbit(_private_rabbit_server):
    """A running private RabbitMQ node (``.amqp_uri``); ``.restart()``, ``.kill()``, ``.down()``..."""
    if not _private_rabbit_server.running:
        _private_rabbit_server.start()
    return _private_rabbit_server


@pytest.fixture
def private_postgres(_private_postgres_server):
    """A running private PostgreSQL cluster (``.url``); ``.restart()``, ``.kill()``, ``.down()``..."""
    if not _private_postgres_server.running:
        _private_postgres_server.start()
    return _private_postgres_server