"""The transactional outbox: an event is published if and only if its transaction committed."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from kombu import Connection, Exchange, Queue
from sqlalchemy import text

from services.accounts.service import AccountsService
from services.common.outbox import OutboxRelay

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def accounts_events(amqp_uri):
    """A queue bound to every accounts event, declared before anything publishes."""
    queue = Queue("test-accounts-events", Exchange("accounts.events", type="topic", durable=True), routing_key="#", durable=True)
    with Connection(amqp_uri) as conn:
        queue(conn.default_channel).declare()

    def received(expected: int, timeout: float = 10.0) -> list[dict]:
        bodies = []
        deadline = time.monotonic() + timeout
        with Connection(amqp_uri) as conn:
            bound = queue(conn.default_channel)
            while time.monotonic() < deadline:
                message = bound.get(no_ack=True)
                if message is None:
                    if len(bodies) >= expected:
                        break
                    time.sleep(0.05)
                    continue
                bodies.append(json.loads(message.body))
        return bodies

    return received


def test_committed_events_reach_the_broker_with_their_envelope(start_services, rpc, accounts_events, db):
    start_services(AccountsService)
    user = rpc.accounts.register_user("frank", "frank@example.com", "a long password")
    rpc.accounts.create_thing(user["id"], {"url": "https://frank.example/", "title": "Frank's page"})
    events = accounts_events(2)
    assert [e["type"] for e in events] == ["user.registered", "thing.created"]
    assert events[0]["data"] == {"user_id": user["id"], "username": "frank"}
    assert all(e["version"] == 1 and e["event_id"] and e["occurred_at"] for e in events)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts.outbox WHERE sent_at IS NULL")).scalar() == 0


def test_rolled_back_work_publishes_nothing(start_services, rpc, accounts_events):
    from services.common.errors import Conflict

    start_services(AccountsService)
    rpc.accounts.register_user("gina", "gina@example.com", "a long password")
    with pytest.raises(Conflict):
        rpc.accounts.register_user("gina", "other@example.com", "a long password")
    events = accounts_events(1, timeout=2)
    assert [e["type"] for e in events] == ["user.registered"]


def test_event_survives_the_death_of_the_process_between_commit_and_publish(amqp_uri, database_url, accounts_events, db, rpc):
    """Run accounts as its own process with the relay off (it dies before publishing), SIGKILL it,
    then start a relay: the committed event is published, exactly as written."""
    env = dict(
        os.environ,
        AMQP_URI=amqp_uri,
        ACCOUNTS_DATABASE_URL=database_url,
        CLICKS_DATABASE_URL=database_url,
        SETTLEMENT_DATABASE_URL=database_url,
        OUTBOX_RELAY="off",
        PYTHONWARNINGS="ignore",
    )
    process = subprocess.Popen([sys.executable, "-m", "services.accounts"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                rpc.accounts.health()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        rpc.accounts.register_user("hank", "hank@example.com", "a long password")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert accounts_events(0, timeout=1) == []
    with db.connect() as conn:
        pending = conn.execute(text("SELECT body FROM accounts.outbox WHERE sent_at IS NULL")).scalars().all()
    assert [p["type"] for p in pending] == ["user.registered"]

    relay = OutboxRelay(database_url, amqp_uri, "accounts", "accounts")
    try:
        assert relay.drain() == 1
        assert relay.drain() == 0  # marked sent: not published twice
    finally:
        relay.close()
    events = accounts_events(1)
    assert events == pending
