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
