"""The click statement on the real database: redeliveries, deadlines, the rules' order, the seal."""
import itertools
import threading
from collections import Counter
import time
import uuid

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from testsupport.seeding import seed_click_path
from services.clicks import ingest, periods
from services.clicks.worker import ClickWorker, libpq_dsn


@pytest.fixture
def worker(database_url):
    seed_click_path(database_url, 5, 5)  # readers 1-5 with means; things 1-5 owned by user 6
    click_worker = ClickWorker("amqp://unused", database_url)
    click_worker._connect_db()
    yield click_worker
    click_worker._close_db()


def stored(db) -> list:
    with db.connect() as conn:
        return conn.execute(text("SELECT period_id, user_id, thing_id FROM clicks.clicks ORDER BY id")).all()


def test_a_request_delivered_again_after_its_period_was_sealed_is_ok_and_stored_once(worker, db):
    request = ingest.ClickRequest(str(uuid.uuid4()), 1, 2)
    assert worker._resolve([request])[0]["status"] == "ok"
    with Session(db) as session:
        periods.seal(session)
        session.commit()
    again = worker._resolve([request])
    assert again[0]["status"] == "ok"
    assert len(stored(db)) == 1
    # a new request for the same pair in the new period is a new click
    assert worker._resolve([ingest.ClickRequest(str(uuid.uuid4()), 1, 2)])[0]["status"] == "ok"
    assert len(stored(db)) == 2


def test_a_seal_is_not_held_off_by_click_batches_that_keep_overlapping(database_url, db):
    """Busy workers' batches overlap without a gap: each begins before the one before it commits.
    The seal waits for the batches in flight and the later ones wait for the seal, so the period
    closes while the clicks keep coming (with share-locked period rows it waited until they
    stopped: a row lock lets a new sharer in past a waiting sealer). No click is lost on the way."""
    seed_click_path(database_url, 100, 5)  # 500 distinct (reader, thing) pairs
    pairs = itertools.product(range(1, 101), range(1, 6))
    connections = [psycopg2.connect(libpq_dsn(database_url)) for _ in range(3)]
    answers, sealed = [], threading.Event()
    outcome = {}

    def batch(conn, reader, thing):
        with conn.cursor() as cursor:
            answers.append(ingest.resolve(cursor, [ingest.ClickRequest(str(uuid.uuid4()), reader, thing)])[0])

    def seal():
        try:
            with Session(db) as session:
                outcome["seal"] = periods.seal(session)
                session.commit()
        except Exception as exc:  # noqa: BLE001 - reported below, not lost with the thread
            outcome["seal"] = exc
        finally:
            sealed.set()

    def relay(until: float):
        """Batch after batch on three connections; each commits only once the next has started
        (or after 0.3 s, when the next waits): while this runs, some batch always holds the period."""
        holder = connections[0]
        batch(holder, *next(pairs))
        after_seal = 0
        for step in itertools.count(1):
            if time.monotonic() > until or after_seal == 3:
                break
            after_seal += sealed.is_set()
            time.sleep(0.02)  # the batch's statement
            successor = connections[step % 3]
            started = threading.Thread(target=batch, args=(successor, *next(pairs)))
            started.start()
            started.join(0.3)
            holder.commit()
            started.join()
            holder = successor
        holder.commit()

    try:
        relay_thread = threading.Thread(target=relay, args=(time.monotonic() + 8,))
        relay_thread.start()
        time.sleep(0.5)
        sealer = threading.Thread(target=seal)
        sealer.start()
        relay_thread.join()
        sealed_while_clicks_came = sealed.is_set()
        sealer.join(30)
    finally:
        for conn in connections:
            conn.close()
    assert not isinstance(outcome.get("seal"), Exception), outcome
    assert sealed_while_clicks_came, "the seal waited until the click batches stopped coming"
    closed, next_id = outcome["seal"]
    assert all(a["status"] == "ok" for a in answers), answers
    in_period = Counter(period for period, _, _ in stored(db))
    assert sum(in_period.values()) == len(answers)
    assert in_period.get(closed, 0) > 0 and in_period.get(next_id, 0) > 0
    assert {a["period"] for a in answers} == {closed, next_id}
    with db.connect() as conn:  # every click of the sealed period was made before its seal
        late = conn.execute(
            text("SELECT count(*) FROM clicks.clicks c JOIN clicks.periods p ON p.id = c.period_id WHERE p.sealed_at < c.created_at")
        ).scalar()
    assert late == 0


def test_a_request_past_its_deadline_is_not_carried_out(worker, db):
    late = ingest.ClickRequest(str(uuid.uuid4()), 1, 3, deadline=time.time() - 1)
    on_time = ingest.ClickRequest(str(uuid.uuid4()), 2, 3, deadline=time.time() + 30)
    answers = worker._resolve([late, on_time])
    assert [a["status"] for a in answers] == ["expired", "ok"]
    assert [(r.user_id, r.thing_id) for r in stored(db)] == [(2, 3)]


def test_one_batch_judges_each_request_by_flattrs_rules(worker, db):
    with db.begin() as conn:
        conn.execute(text("UPDATE clicks.means SET has_means = false WHERE user_id = 5"))
    batch = [
        ingest.ClickRequest(str(uuid.uuid4()), 1, 4),  # ok
        ingest.ClickRequest(str(uuid.uuid4()), 1, 4),  # the same click twice in one batch
        ingest.ClickRequest(str(uuid.uuid4()), 6, 4),  # the owner
        ingest.ClickRequest(str(uuid.uuid4()), 5, 4),  # no means
        ingest.ClickRequest(str(uuid.uuid4()), 1, 999999999),  # no such thing (asked of accounts: none)
    ]
    worker.rpc = FakeOwners()
    statuses = [a["status"] for a in worker._resolve(batch)]
    assert statuses == ["ok", "flattr_once", "flattr_owner", "no_means", "not_found"]
    assert [(r.user_id, r.thing_id) for r in stored(db)] == [(1, 4)]


class FakeOwners:
    """Stands in for the RPC to accounts and settlement when the replicas miss: none of these exist."""

    class accounts:
        @staticmethod
        def get_things(ids):
            return []

    class settlement:
        @staticmethod
        def means_of(ids):
            return {str(i): False for i in ids}


def test_libpq_connection_from_the_services_url(database_url):
    """The worker talks libpq directly (COPY, no SQLAlchemy): the DSN it derives names the same database."""
    conn = psycopg2.connect(libpq_dsn(database_url))
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_database(), current_user")
            assert cursor.fetchone() == (make_url(database_url).database, make_url(database_url).username)
    finally:
        conn.close()


def test_a_click_the_replicas_cannot_judge_while_its_owner_is_away_is_unavailable_not_lost(database_url, amqp_uri, db):
    """Thing 999 is unknown to the replica and accounts is not running to be asked: the answer is
    'unavailable' (the gateway's 503), nothing is stored, and the next batch asks again."""
    seed_click_path(database_url, 5, 5)
    worker = ClickWorker(amqp_uri, database_url)
    worker._connect_db()
    try:
        answers = worker._resolve([ingest.ClickRequest(str(uuid.uuid4()), 1, 999), ingest.ClickRequest(str(uuid.uuid4()), 1, 2)])
        assert [a["status"] for a in answers] == ["unavailable", "ok"]
        assert worker.rpc is None  # the next batch makes a new proxy
        assert [(r.user_id, r.thing_id) for r in stored(db)] == [(1, 2)]
    finally:
        worker._drop_rpc()
        worker._close_db()
