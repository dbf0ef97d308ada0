"""The budget that counts is the one in force at the seal. A change made before the seal while
the broker was away waits in accounts' outbox; settlement must not charge the period until it
has been published (the soak found a period charged 2,000 instead of the 200 set just before
the seal, during a RabbitMQ restart)."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.accounts.service import AccountsService
from services.clicks.service import ClicksService
from services.settlement import batch
from services.settlement.batch_service import SettlementBatchService
from tests.factories import PASSWORD, eventually, unique_username


def test_a_budget_change_still_in_accounts_outbox_holds_the_settlement(start_services, rpc, db):
    # accounts' relay is off: its events stay in its outbox, as while the broker is away
    start_services(AccountsService, OUTBOX_RELAY="off")
    start_services(ClicksService, SettlementBatchService)
    reader = rpc.accounts.register_user(unique_username("reader"), f"{unique_username()}@example.com", PASSWORD)
    before_change = datetime.now(timezone.utc) - timedelta(seconds=5)
    rpc.accounts.set_budget(reader["id"], 200)
    assert rpc.accounts.budget_changes_unsent(datetime.now(timezone.utc).isoformat()) == 1
    assert rpc.accounts.budget_changes_unsent(before_change.isoformat()) == 0  # made after that instant

    # the operator closes the period: settlement hears period.sealed, and waits
    period = rpc.clicks.close_period()["period"]
    assert eventually(lambda: status(db, period) is not None, timeout=10)
    assert rpc.settlement_batch.settle(period) is None  # held: a change from before the seal is unsent
    assert status(db, period)["state"] == "pending"

    with db.begin() as conn:  # the relay publishes it (here: marks it sent)
        conn.execute(text("UPDATE accounts.outbox SET sent_at = now() WHERE event_type = 'budget.changed'"))
    assert rpc.settlement_batch.settle(period)["state"] == "settled"


def status(db, period: str) -> dict | None:
    with Session(db) as session:
        return batch.status(session, period)
