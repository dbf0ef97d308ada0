"""A service with a large backlog of events still answers its RPCs at once, and drains the backlog.

The backlog is what a crash leaves: events that piled up in a service's queue while it was down.
Here 20,000 ``things.counted`` events wait in accounts' queue before accounts starts.
"""
import time
import uuid
from datetime import datetime, timezone

from kombu import Connection, Exchange, Producer
from sqlalchemy import text

from services.accounts.service import AccountsService
from services.common import topology
from services.common.events import exchange_name

EVENTS = 20000
THINGS = 50


def _seed_things(db) -> None:
    with db.begin() as conn:
        conn.execute(text("INSERT INTO accounts.users (id, username, email, password_hash) VALUES (9001, 'owner', 'o@example.com', 'x')"))
        conn.execute(
            text("INSERT INTO accounts.things (id, owner_id, url, title) SELECT i, 9001, 'https://backlog.example/' || i, 'Thing ' || i FROM generate_series(1, :n) i"),
            {"n": THINGS},
        )


def _publish_backlog(amqp_uri: str) -> int:
    """EVENTS events, each counting one click for three things in a rotating order; returns the
    clicks counted per thing."""
    exchange = Exchange(exchange_name("clicks"), type="topic", durable=True, auto_delete=False)
    day = datetime.now(timezone.utc).date().isoformat()
    with Connection(amqp_uri) as conn:
        producer = Producer(conn.default_channel, exchange=exchange, serializer="json")
        for i in range(EVENTS):
            things = [(i + k) % THINGS + 1 for k in (0, 17, 33)][:: 1 if i % 2 else -1]
            producer.publish(
                {"event_id": str(uuid.uuid4()), "type": "things.counted", "version": 1, "occurred_at": datetime.now(timezone.utc).isoformat(),
                 "data": {"period": "2026-12", "day": day, "counts": [[t, 1] for t in things]}},
                routing_key="things.counted", delivery_mode=2,
            )
    return EVENTS * 3


def test_rpcs_are_answered_promptly_while_a_large_event_backlog_drains(start_services, rpc, amqp_uri, db):
    _seed_things(db)
    topology.declare(amqp_uri)
    clicks = _publish_backlog(amqp_uri)
    start_services(AccountsService)

    latencies = []
    started = time.monotonic()
    drained_after = None
    while time.monotonic() - started < 120:
        t = time.monotonic()
        assert rpc.accounts.catalog()["categories"]
        assert rpc.accounts.get_things([1])[0]["id"] == 1
        latencies.append(time.monotonic() - t)
        with db.connect() as conn:
            counted = conn.execute(text("SELECT coalesce(sum(flattrs), 0) FROM accounts.things")).scalar()
        if counted == clicks:
            drained_after = time.monotonic() - started
            break
        time.sleep(0.05)
    print(f"\n{EVENTS} events drained in {drained_after} s; {len(latencies)} RPC pairs, slowest {max(latencies):.3f} s")
    assert drained_after is not None, "the backlog did not drain"
    # behind a 20,000-event backlog sharing its workers, an RPC waited until the backlog was gone
    assert max(latencies) < 2.0
    with db.connect() as conn:
        deadlocks = conn.execute(text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")).scalar()
        daily = conn.execute(text("SELECT sum(flattrs) FROM accounts.thing_daily_counts")).scalar()
    assert daily == clicks
    assert deadlocks == 0
