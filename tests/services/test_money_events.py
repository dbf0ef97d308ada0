"""Money events on the real broker: payouts survive a crash, duplicates change nothing, concurrent
deposits and payouts never overdraw, means reach subscribers fast, every event fits its schema."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import eventlet
import jsonschema
import pytest
from kombu import Connection, Exchange, Producer, Queue
from sqlalchemy import text

from services.accounts.service import AccountsService
from services.common import contracts
from services.common.errors import InvalidParameters
from services.settlement.payouts import PayoutsService
from services.settlement.providers import SandboxProvider
from services.settlement.service import SettlementService
from tests.factories import eventually

ROOT = Path(__file__).resolve().parents[2]


class EventTap:
    """A queue bound to every event of a source, declared before anything publishes."""

    def __init__(self, amqp_uri, source):
        self.amqp_uri = amqp_uri
        self.queue = Queue(f"tap-{source}-{uuid.uuid4().hex[:6]}", Exchange(f"{source}.events", type="topic", durable=True), routing_key="#")
        with Connection(amqp_uri) as conn:
            self.queue(conn.default_channel).declare()
        self.seen = []

    def drain(self, until=lambda seen: False, timeout=5.0):
        deadline = time.monotonic() + timeout
        with Connection(self.amqp_uri) as conn:
            bound = self.queue(conn.default_channel)
            while True:
                message = bound.get(no_ack=True)
                if message is not None:
                    self.seen.append((time.monotonic(), json.loads(message.body)))
                    continue
                if until([e for _, e in self.seen]) or time.monotonic() > deadline:
                    return [e for _, e in self.seen]
                time.sleep(0.01)


def republish(amqp_uri, source, event):
    with Connection(amqp_uri) as conn:
        exchange = Exchange(f"{source}.events", type="topic", durable=True)
        Producer(conn.default_channel, exchange=exchange, serializer="json").publish(event, routing_key=event["type"], delivery_mode=2)


@pytest.fixture
def money(start_services, rpc):
    start_services(AccountsService, SettlementService, PayoutsService)
    return rpc


def creator_with_revenue(rpc, amount, name=None):
    user = rpc.accounts.register_user(name or f"c{uuid.uuid4().hex[:8]}", f"{uuid.uuid4().hex[:8]}@example.com", "a long password")
    rpc.settlement.adjust("revenue", user["id"], amount, "test revenue", "tests", uuid.uuid4().hex)
    return user


def test_payout_worker_killed_after_paying_records_once_and_pays_once(start_services, rpc, amqp_uri, database_url, db):
    start_services(AccountsService, SettlementService)
    creator = creator_with_revenue(rpc, 5000)
    env = dict(os.environ, AMQP_URI=amqp_uri, SETTLEMENT_DATABASE_URL=database_url, ACCOUNTS_DATABASE_URL=database_url,
               CLICKS_DATABASE_URL=database_url, SANDBOX_DIE_AFTER_PAYING="1", PYTHONWARNINGS="ignore")
    worker = subprocess.Popen([sys.executable, "-m", "services.settlement.run_payouts"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        payout = rpc.settlement.request_payout(creator["id"], 2000, "crash-1")["payout"]
        assert worker.wait(timeout=30) == 137  # died between "paid at the provider" and "recorded"
    finally:
        if worker.poll() is None:
            worker.kill()
    sandbox = SandboxProvider(database_url)
    assert sandbox.payments(f"payout-{payout['id']}") == 1
    assert rpc.settlement.payout(creator["id"], payout["id"])["state"] == "requested"

    start_services(PayoutsService)  # the restarted worker gets the unacknowledged event again
    assert eventually(lambda: rpc.settlement.payout(creator["id"], payout["id"])["state"] == "completed", timeout=10)
    assert sandbox.payments(f"payout-{payout['id']}") == 1
    with db.connect() as conn:
        completions = conn.execute(text("SELECT count(*) FROM settlement.transactions WHERE kind = 'payout_completed'")).scalar()
    assert completions == 1
    check = rpc.settlement.ledger_check()
    assert check["ok"], check
    assert check["totals"]["paid_out"] == 2000 and check["totals"]["revenue"] == 3000


def test_every_event_delivered_twice_changes_nothing(money, amqp_uri):
    accounts_tap, settlement_tap = EventTap(amqp_uri, "accounts"), EventTap(amqp_uri, "settlement")
    reader = money.accounts.register_user("reader", "reader@example.com", "a long password")
    money.accounts.set_budget(reader["id"], 500)
    money.settlement.deposit(reader["id"], 800, "d1")
    creator = creator_with_revenue(money, 5000)
    payout = money.settlement.request_payout(creator["id"], 1500, "p1")["payout"]
    assert eventually(lambda: money.settlement.payout(creator["id"], payout["id"])["state"] == "completed")
    before = (money.settlement.wallet(reader["id"]), money.settlement.revenue(creator["id"]), money.settlement.ledger_check())

    account_events = accounts_tap.drain(lambda seen: any(e["type"] == "budget.changed" for e in seen))
    settlement_events = settlement_tap.drain(lambda seen: any(e["type"] == "payout.completed" for e in seen))
    for event in account_events:
        republish(amqp_uri, "accounts", event)
    for event in settlement_events:
        republish(amqp_uri, "settlement", event)
    eventlet.sleep(1.0)  # give the handlers time to (not) act on the duplicates
    after = (money.settlement.wallet(reader["id"]), money.settlement.revenue(creator["id"]), money.settlement.ledger_check())
    assert after == before
    assert before[0] == {"balance": 800, "budget": 500, "currency": "EUR", "has_means": True}
    assert before[2]["ok"] and before[2]["totals"]["paid_out"] == 1500


def test_concurrent_deposits_and_payouts_never_overdraw_or_lose_an_update(money, amqp_uri):
    from services.gateway.rpc import RpcPool

    creator = creator_with_revenue(money, 10000)
    reader = money.accounts.register_user("busy", "busy@example.com", "a long password")
    # a standalone proxy serves one caller at a time: concurrent callers share a pool of them
    rpc_pool = RpcPool(amqp_uri, size=25, timeout=20)
    green = eventlet.GreenPool(50)

    def request(i):
        try:
            return rpc_pool.call("settlement", "request_payout", creator["id"], 1000, f"p{i}")["payout"]["amount"]
        except InvalidParameters:
            return 0

    def top_up(i):
        return rpc_pool.call("settlement", "deposit", reader["id"], 200 + 10 * i, f"d{i}")["deposit"]["amount"]

    try:
        payouts = list(green.imap(request, range(25)))
        deposits = list(green.imap(top_up, range(25)))
    finally:
        rpc_pool.close()
    assert sum(payouts) == 10000  # exactly ten of the twenty-five fit
    assert money.settlement.wallet(reader["id"])["balance"] == sum(deposits) == sum(200 + 10 * i for i in range(25))
    assert money.settlement.revenue(creator["id"])["balance"] == 0
    check = money.settlement.ledger_check()
    assert check["ok"], check


def test_means_reach_a_subscriber_within_a_second_of_the_deposit(money, amqp_uri):
    tap = EventTap(amqp_uri, "settlement")
    reader = money.accounts.register_user("quick", "quick@example.com", "a long password")
    money.accounts.set_budget(reader["id"], 500)
    assert eventually(lambda: money.settlement.wallet(reader["id"])["budget"] == 500)
    delays = []
    for i, amount in enumerate((600, 700)):
        answered = time.monotonic()
        money.settlement.deposit(reader["id"], amount, f"d{i}")
        if i == 0:
            events = tap.drain(lambda seen: any(e["type"] == "means.changed" for e in seen), timeout=3)
            arrived = next(t for t, e in tap.seen if e["type"] == "means.changed")
            delays.append(arrived - answered)
    change = next(e for e in events if e["type"] == "means.changed")
    assert change["data"] == {"user_id": reader["id"], "has_means": True, "balance": 600, "budget": 500, "currency": "EUR"}
    print(f"deposit answer -> means.changed received: {delays[0] * 1000:.1f} ms")
    assert delays[0] < 1.0
    # a second deposit changes the balance but not the means: no new event
    assert [e["type"] for e in tap.drain(timeout=0.5)].count("means.changed") == 1


def test_every_published_settlement_event_validates_against_its_schema(money, amqp_uri):
    tap = EventTap(amqp_uri, "settlement")
    reader = money.accounts.register_user("valid", "valid@example.com", "a long password")
    money.accounts.set_budget(reader["id"], 300)
    money.settlement.deposit(reader["id"], 400, "d")
    creator = creator_with_revenue(money, 5000)
    money.settlement.request_payout(creator["id"], 1000, "ok")
    money.settlement.request_payout(creator["id"], 1013, "declined")
    events = tap.drain(lambda seen: sum(e["type"] in ("payout.completed", "payout.failed") for e in seen) == 2 and any(e["type"] == "means.changed" for e in seen), timeout=10)
    types = sorted(e["type"] for e in events)
    assert types == ["means.changed", "payout.completed", "payout.failed", "payout.requested", "payout.requested"]
    for event in events:
        contracts.validate(event)
    broken = dict(events[0], data={**events[0]["data"], "user_id": "not-a-number"})
    with pytest.raises(jsonschema.ValidationError):
        contracts.validate(broken)


def test_example_notifier_writes_one_line_per_payout_even_when_redelivered(start_services, rpc, amqp_uri, tmp_path, monkeypatch):
    from services.common.contracts.example_notifier import PayoutNotifier

    output = tmp_path / "notes.jsonl"
    monkeypatch.setenv("NOTIFIER_OUTPUT", str(output))
    tap = EventTap(amqp_uri, "settlement")
    start_services(AccountsService, SettlementService, PayoutsService, PayoutNotifier)
    creator = creator_with_revenue(rpc, 5000)
    rpc.settlement.request_payout(creator["id"], 2500, "n1")
    assert eventually(lambda: output.exists() and output.read_text().count("\n") == 1, timeout=10)
    completed = next(e for e in tap.drain(lambda s: any(e["type"] == "payout.completed" for e in s)) if e["type"] == "payout.completed")
    republish(amqp_uri, "settlement", completed)
    eventlet.sleep(0.5)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["user_id"] == creator["id"]
    assert "25.00 EUR" in lines[0]["message"]


def test_a_deposit_charged_but_not_recorded_before_a_crash_is_completed_once(money, db, database_url):
    """The process died after the provider's yes and before our ledger: the pending deposit it
    wrote first is found by the reconciliation and completed exactly once."""
    reader = money.accounts.register_user("crashy", "crashy@example.com", "a long password")
    reference = f"deposit-{reader['id']}-lost"
    SandboxProvider(database_url).charge(reference, 900)  # the provider took the money
    with db.begin() as conn:  # ...and our pending row is all that was written
        conn.execute(
            text(
                "INSERT INTO settlement.deposits (user_id, amount, idempotency_key, provider_ref, state, created_at) "
                "VALUES (:u, 900, 'lost', :r, 'pending', now() - interval '5 minutes')"
            ),
            {"u": reader["id"], "r": reference},
        )
    assert money.settlement.wallet(reader["id"])["balance"] == 0
    assert money.settlement.reconcile_deposits() == 1
    assert money.settlement.reconcile_deposits() == 0
    assert money.settlement.wallet(reader["id"])["balance"] == 900
    # the client's retry with the same key answers the same deposit and moves nothing more
    again = money.settlement.deposit(reader["id"], 900, "lost")
    assert again["created"] is False and again["deposit"]["amount"] == 900
    assert money.settlement.wallet(reader["id"])["balance"] == 900
    check = money.settlement.ledger_check()
    assert check["ok"], check
