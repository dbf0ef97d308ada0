"""For a test module whose tests cannot see each other (each makes its own users and things, none
closes a period or counts rows it did not make): ``from tests.shared_platform import gateway, db,
rpc`` runs them all on one platform (``shared_platform`` in tests/conftest.py), started once for
the module instead of once per test."""
import pytest


@pytest.fixture
def gateway(shared_platform):
    return shared_platform.gateway


@pytest.fixture
def db(shared_platform):
    return shared_platform.db


@pytest.fixture
def rpc(shared_platform):
    return shared_platform.rpc


@pytest.fixture
def gateway_factory(shared_platform):
    return shared_platform.gateway_factory
