"""The click statement on the real database: redeliveries, deadlines, the rules' order."""
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
