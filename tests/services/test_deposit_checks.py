"""Deposits and adjustments beyond doubt: only the request that wrote a pending deposit asks the
provider; a deposit is credited only with the amount the provider says it charged; the deposit
check finds every difference from the provider's records; adjustments' keys are per user."""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import eventlet
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.accounts.service import AccountsService
from services.common.errors import Conflict, ProviderError, Unavailable
from services.common.money import Money
from services.common.outbox import TableRecorder
from services.settlement import deposits, ledger
from services.settlement.models import outbox
from services.settlement.providers import ProviderResult, SandboxProvider
from services.settlement.service import SettlementService

ROOT = Path(__file__).resolve().parents[2]


class HeldProvider(SandboxProvider):
    """The sandbox, counting its charges and holding each until the test lets it answer."""

    def __init__(self, url):
        super().__init__(url)
        self.calls = []
        self.answer = eventlet.event.Event()

    def charge(self, reference, amount):
        self.calls.append((reference, amount))
        self.answer.wait()
        return super().charge(reference, amount)


class OverchargingProvider(SandboxProvider):
    """Charges 100 cents more than asked, and says it charged what was asked."""

    def charge(self, reference, amount):
        return ProviderResult(super().charge(reference, amount + 100).outcome, reference, "", amount)


class MisreportingProvider(SandboxProvider):
    """Charges what was asked, and answers another amount."""

    def charge(self, reference, amount):
        result = super().charge(reference, amount)
        return ProviderResult(result.outcome, reference, result.message, amount * 10)


def in_session(db, work, *args):
    """``work(session, *args)`` in a session of its own; a deposit comes back as (id, created)."""
    with Session(db) as session:
        result = work(session, *args)
        if isinstance(result, tuple):
            return result[0].id, result[1]
        return result


def wallet_of(db, user_id):
    with Session(db) as session:
        return ledger.balance(session, "wallet", user_id).cents


def test_only_the_request_that_wrote_the_pending_deposit_asks_the_provider(db, database_url):
    provider = HeldProvider(database_url)
    events = TableRecorder(outbox)

    def deposit(amount):
        return in_session(db, deposits.deposit, events, provider, 7, Money(amount), "same-key")

    first = eventlet.spawn(deposit, 500)
    while not provider.calls:
        eventlet.sleep(0.01)
    second = eventlet.spawn(deposit, 500)  # the same request again while the provider answers the first
    with pytest.raises(Conflict):
        deposit(900)  # the same key with another amount
    eventlet.sleep(0.3)
    assert provider.calls == [("deposit-7-same-key", 500)]
    provider.answer.send(True)
    (made, created), (again, created_again) = first.wait(), second.wait()
    assert (created, created_again) == (True, False) and made == again
    assert provider.calls == [("deposit-7-same-key", 500)]
    assert wallet_of(db, 7) == 500
    with Session(db) as session:
        assert ledger.check(session)["ok"]


def test_a_request_waits_only_so_long_for_another_requests_deposit(db, database_url):
    provider = HeldProvider(database_url)
    events = TableRecorder(outbox)
    first = eventlet.spawn(in_session, db, deposits.deposit, events, provider, 8, Money(300), "k")
    while not provider.calls:
        eventlet.sleep(0.01)
    with pytest.raises(Unavailable, match="still being processed"):
        in_session(db, deposits.deposit, events, provider, 8, Money(300), "k", 0.2)
    provider.answer.send(True)
    assert first.wait()[1] is True
    assert len(provider.calls) == 1 and wallet_of(db, 8) == 300


def test_a_deposit_the_provider_reports_with_another_amount_is_not_credited(db, database_url):
    provider = MisreportingProvider(database_url)
    events = TableRecorder(outbox)
    for _ in range(2):  # and the same request again: still refused, the provider not asked again
        with pytest.raises(ProviderError, match="another amount"):
            in_session(db, deposits.deposit, events, provider, 9, Money(400), "k")
    assert wallet_of(db, 9) == 0
    with db.connect() as conn:
        row = conn.execute(text("SELECT state, amount, provider_amount FROM settlement.deposits WHERE user_id = 9")).one()
    assert tuple(row) == ("mismatched", 400, 4000)
    found = in_session(db, deposits.compare_with_provider, provider)
    assert found["ok"] is False and found["differences"] == 1
    assert found["listed"][0]["problem"] == "the provider reported another amount; not credited"
    assert (found["listed"][0]["amount"], found["listed"][0]["provider_amount"]) == (400, 4000)
    with Session(db) as session:
        assert ledger.check(session)["ok"]


def test_the_deposit_check_finds_every_difference_from_the_providers_records(db, database_url):
    sandbox = SandboxProvider(database_url)
    events = TableRecorder(outbox)
    for user_id, amount in ((1, 500), (2, 600), (3, 700)):
        in_session(db, deposits.deposit, events, sandbox, user_id, Money(amount), "d")
    assert in_session(db, deposits.compare_with_provider, sandbox) == {
        "ok": True, "deposits": 3, "differences": 0, "listed": [], "currency": "EUR",
    }
    in_session(db, deposits.deposit, events, OverchargingProvider(database_url), 4, Money(800), "d")
    with db.begin() as conn:
        # a charge the provider lost, and one it made that no deposit here names
        conn.execute(text("DELETE FROM settlement.sandbox_payments WHERE reference = 'deposit-2-d'"))
        conn.execute(text("INSERT INTO settlement.sandbox_payments (reference, direction, amount, outcome) VALUES ('stray', 'charge', 55, 'approved')"))
        # a crash left deposit 3 pending after the provider charged it
        conn.execute(text("INSERT INTO settlement.sandbox_payments (reference, direction, amount, outcome) VALUES ('deposit-5-d', 'charge', 900, 'approved')"))
        conn.execute(
            text("INSERT INTO settlement.deposits (user_id, amount, idempotency_key, provider_ref, state, created_at) "
                 "VALUES (5, 900, 'd', 'deposit-5-d', 'pending', now() - interval '5 minutes')")
        )
    found = in_session(db, deposits.compare_with_provider, sandbox)
    problems = {(d["reference"], d["problem"], d["amount"], d["provider_amount"]) for d in found["listed"]}
    assert problems == {
        ("deposit-2-d", "credited, but the provider has no charge for it", 600, None),
        ("deposit-4-d", "credited, but the provider charged another amount", 800, 900),
        ("deposit-5-d", "charged by the provider, still pending here", 900, 900),
        ("stray", "charged by the provider, no deposit here", None, 55),
    }
    assert found["ok"] is False and found["differences"] == 4 and found["deposits"] == 5


def test_the_check_deposits_command_exits_1_when_deposits_differ(db, database_url):
    def run():
        env = dict(os.environ, SETTLEMENT_DATABASE_URL=database_url, PAYMENT_PROVIDER="sandbox", PYTHONWARNINGS="ignore")
        return subprocess.run([sys.executable, "-m", "services.settlement.ops", "check-deposits"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    in_session(db, deposits.deposit, TableRecorder(outbox), SandboxProvider(database_url), 1, Money(500), "d")
    agreed = run()
    assert agreed.returncode == 0, agreed.stderr
    assert json.loads(agreed.stdout)["deposits"] == 1
    with db.begin() as conn:
        conn.execute(text("UPDATE settlement.sandbox_payments SET amount = 5000"))
    differ = run()
    assert differ.returncode == 1 and "DIFFER" in differ.stderr
    assert json.loads(differ.stdout)["listed"][0]["provider_amount"] == 5000


def test_a_pending_deposit_the_provider_never_charged_is_removed_and_can_be_made_again(db, database_url):
    sandbox = SandboxProvider(database_url)
    events = TableRecorder(outbox)
    with db.begin() as conn:  # the request died before it asked the provider
        conn.execute(
            text("INSERT INTO settlement.deposits (user_id, amount, idempotency_key, provider_ref, state, created_at) "
                 "VALUES (6, 250, 'lost', 'deposit-6-lost', 'pending', now() - interval '5 minutes')")
        )
    assert in_session(db, deposits.complete_pending, events, sandbox) == 1
    assert sandbox.charge_record("deposit-6-lost") is None  # nobody charged it meanwhile
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM settlement.deposits")).scalar() == 0
    made, created = in_session(db, deposits.deposit, events, sandbox, 6, Money(250), "lost")
    assert created and wallet_of(db, 6) == 250


@pytest.fixture
def settlement(start_services, rpc):
    start_services(AccountsService, SettlementService)
    return rpc.settlement


def test_an_adjustments_key_names_it_among_its_users_adjustments(settlement, db):
    first = settlement.adjust("revenue", 21, 500, "correction", "admin", "fix-1")
    again = settlement.adjust("revenue", 21, 500, "correction", "admin", "fix-1")
    assert first["created"] is True and again == {**first, "created": False}
    for other in (("revenue", 21, 501, "correction"), ("wallet", 21, 500, "correction"), ("revenue", 21, 500, "another reason")):
        with pytest.raises(Conflict):
            settlement.adjust(*other, "admin", "fix-1")
    # the same key for another user is that user's own adjustment
    elsewhere = settlement.adjust("revenue", 22, 700, "correction", "admin", "fix-1")
    assert elsewhere["created"] is True and elsewhere["transaction_id"] != first["transaction_id"]
    assert (elsewhere["balance"], settlement.revenue(21)["balance"]) == (700, 500)
    with db.connect() as conn:
        rows = conn.execute(text("SELECT owner_id, idempotency_key, amount, actor FROM settlement.adjustments ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(21, "fix-1", 500, "admin"), (22, "fix-1", 700, "admin")]
    assert settlement.ledger_check()["ok"]


def test_the_same_adjustment_asked_at_once_is_posted_once(settlement, amqp_uri):
    from services.gateway.rpc import RpcPool

    pool = RpcPool(amqp_uri, size=2, timeout=20)  # a standalone proxy serves one caller at a time
    try:
        answers = list(eventlet.GreenPool(2).imap(lambda _: pool.call("settlement", "adjust", "wallet", 23, 300, "goodwill", "admin", "g-1"), range(2)))
    finally:
        pool.close()
    assert sorted(a["created"] for a in answers) == [False, True]
    assert answers[0]["transaction_id"] == answers[1]["transaction_id"]
    assert settlement.wallet(23)["balance"] == 300


def test_the_deposit_check_is_an_rpc(settlement, db):
    settlement.deposit(31, 1200, uuid.uuid4().hex)
    assert settlement.deposits_check()["ok"] is True
    with db.begin() as conn:
        conn.execute(text("UPDATE settlement.sandbox_payments SET amount = amount - 1"))
    found = settlement.deposits_check()
    assert found["ok"] is False and found["listed"][0]["problem"] == "credited, but the provider charged another amount"


def test_an_adjustment_made_when_keys_were_global_is_still_recognised(db, database_url):
    from alembic import command

    from services.settlement import adjustments
    from tests.databases import migrate_test_database

    def migrate(step, revision):
        migrate_test_database(db, database_url, "settlement", step, revision)

    migrate(command.downgrade, "0006")
    with Session(db) as session:  # as the service posted adjustments then
        posted = ledger.transfer(session, "adjustment", "adjustment:old-1", ledger.account(session, "adjustments"),
                                 ledger.account(session, "revenue", 41), Money(250), {"reason": "old", "actor": "ops"})
        session.execute(
            text("INSERT INTO settlement.adjustments (transaction_id, account_id, amount, reason, actor) VALUES (:t, :a, 250, 'old', 'ops')"),
            {"t": posted.transaction_id, "a": ledger.account(session, "revenue", 41)},
        )
        session.commit()
    migrate(command.upgrade, "head")
    events = TableRecorder(outbox)
    with Session(db) as session:
        assert adjustments.adjust(session, events, "revenue", 41, Money(250), "old", "admin", "old-1") == (posted.transaction_id, False)
        with pytest.raises(Conflict):
            adjustments.adjust(session, events, "revenue", 41, Money(251), "old", "admin", "old-1")
        assert ledger.balance(session, "revenue", 41).cents == 250
