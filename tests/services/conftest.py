"""Fixtures shared by the service tests."""
import pytest
from sqlalchemy.orm import Session

from tests.settlement_world import small_world


@pytest.fixture
def world(db):
    """A small sealed period (``tests.settlement_world``), seeded in the test's database."""
    w = small_world()
    with Session(db) as session:
        w.seed(session)
    return w


@pytest.fixture
def start_accounts(start_services, rpc):
    """``start_accounts(**settings)``: the accounts service with these settings; its RPC proxy."""
    from services.accounts.service import AccountsService

    def start(**settings):
        start_services(AccountsService, **settings)
        return rpc.accounts

    return start


@pytest.fixture
def accounts(start_accounts):
    return start_accounts()
