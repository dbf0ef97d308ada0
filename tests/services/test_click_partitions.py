"""The clicks table, one partition per period, on the real database: what an operator relies on.

- upgrading a database with clicks in several periods moves every click into its period's
  partition, ids and the once-per-period rule kept (and the downgrade gives them back);
- sealing makes the next period's partition while click batches are in flight, without a
  deadlock, and a redelivered request is still recognised across the boundary;
- the settlement export and a reader's open-period clicks read their own partition only: an
  operator holding another period's partition does not hold them up;
- ``python -m services.clicks.ops archive`` writes a settled period's clicks to a file and drops
  its partition, keeps what is not settled or within the retention, and carries on after a crash.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import threading
import time
import uuid

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.clicks import ingest, ops, partitions, periods, readers
from services.common.db import dispose_engines
from services.common.errors import InvalidParameters
from services.common.migrate import downgrade, upgrade
from services.settlement import batch
from testsupport.locks import waiting_on_locks
from testsupport.seeding import seed_click_path
from tests.settlement_world import PERIOD, SEALED_AT, sources

pytestmark = pytest.mark.usefixtures("database_url")


def partition_of(conn, period: str) -> str | None:
    return conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'clicks.clicks'::regclass AND pg_get_expr(c.relpartbound, c.oid) = :bound"
        ),
        {"bound": f"FOR VALUES IN ('{period}')"},
    ).scalar()


def test_upgrading_moves_every_click_into_its_periods_partition_and_downgrading_gives_them_back(database_url, db):
    downgrade("clicks", database_url, "0004")
    with db.begin() as conn:
        assert conn.execute(text("SELECT relkind FROM pg_class WHERE oid = 'clicks.clicks'::regclass")).scalar() == "r"
        conn.execute(text("INSERT INTO clicks.periods (id, seq, state, starts_at, sealed_at) VALUES ('2026-09', -1, 'sealed', '2026-09-01', '2026-10-01')"))
        conn.execute(
            text(
                "INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) "
                "SELECT CASE WHEN g % 3 = 0 THEN '2026-09' ELSE (SELECT id FROM clicks.periods WHERE state = 'open') END, "
                "g, g % 7, gen_random_uuid() FROM generate_series(1, 3000) g"
            )
        )
        before = conn.execute(text("SELECT id, period_id, user_id, thing_id, request_id FROM clicks.clicks ORDER BY id")).all()
    upgrade("clicks", database_url)
    with db.connect() as conn:
        after = conn.execute(text("SELECT id, period_id, user_id, thing_id, request_id FROM clicks.clicks ORDER BY id")).all()
        assert after == before
        open_id = conn.execute(text("SELECT id FROM clicks.periods WHERE state = 'open'")).scalar()
        by_partition = dict(conn.execute(text("SELECT tableoid::regclass::text, count(*) FROM clicks.clicks GROUP BY 1")).all())
        assert by_partition == {f"clicks.{partitions.partition_name('2026-09')}": 1000, f"clicks.{partitions.partition_name(open_id)}": 2000}
        assert partition_of(conn, "2026-09") == "clicks_2026_09"
    with db.begin() as conn:
        # new ids continue the old sequence, and the once-per-period rule holds in the partition
        new_id = conn.execute(
            text("INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) VALUES (:p, 99999, 1, gen_random_uuid()) RETURNING id"),
            {"p": open_id},
        ).scalar()
        assert new_id > before[-1].id
    with pytest.raises(Exception, match="clicks_.*period_id_user_id_thing_id|duplicate key"):
        with db.begin() as conn:
            conn.execute(
                text("INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) VALUES ('2026-09', 3, 3, gen_random_uuid())")
            )
    downgrade("clicks", database_url, "0004")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM clicks.clicks")).scalar() == 3001
    upgrade("clicks", database_url)


def wait_until(probe, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sealing_makes_the_next_partition_while_a_click_batch_waits_for_it_without_a_deadlock(database_url, db):
    """A batch comes while a seal is under way (held here before it opens the next period): the
    batch waits for the seal, holding nothing the seal needs; the seal makes the next partition,
    and the batch's click goes into it."""
    from services.clicks.worker import ClickWorker

    seed_click_path(database_url, 5, 5)
    with db.connect() as conn:
        used = list(conn.execute(text("SELECT id FROM clicks.periods")).scalars())
        now = conn.execute(text("SELECT clock_timestamp()")).scalar()
    # the next period's row, not yet committed elsewhere: the seal stops there, holding the open period
    blocker = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://"))
    blocker.cursor().execute(
        "INSERT INTO clicks.periods (id, seq, state) VALUES (%s, -1, 'sealed')", (periods.next_period_id(used, now),)
    )
    worker = ClickWorker("amqp://unused", database_url)
    worker._connect_db()
    outcome = {}

    def run(name, action):
        try:
            outcome[name] = action()
        except Exception as exc:  # a deadlock lands here
            outcome[name] = exc

    def seal():
        with Session(db) as session:
            sealed = periods.seal(session)
            session.commit()
            return sealed

    sealer = threading.Thread(target=run, args=("seal", seal))
    sealer.start()
    wait_until(lambda: waiting_on_locks(db) >= 1)
    batcher = threading.Thread(target=run, args=("click", lambda: worker._resolve([ingest.ClickRequest(str(uuid.uuid4()), 3, 4)])))
    batcher.start()
    wait_until(lambda: waiting_on_locks(db) >= 2)
    blocker.rollback()
    blocker.close()
    sealer.join(15)
    batcher.join(15)
    worker._close_db()
    assert not sealer.is_alive() and not batcher.is_alive()
    assert not isinstance(outcome["seal"], Exception) and not isinstance(outcome["click"], Exception), outcome
    _, next_id = outcome["seal"]
    assert outcome["click"][0]["status"] == "ok" and outcome["click"][0]["period"] == next_id
    with db.connect() as conn:
        rows = conn.execute(text("SELECT tableoid::regclass::text, user_id, thing_id FROM clicks.clicks")).all()
    assert rows == [(f"clicks.{partitions.partition_name(next_id)}", 3, 4)]


def test_the_export_and_a_readers_open_period_read_their_own_partition_only(database_url, db, world):
    seed_click_path(database_url, 5, 5)
    with Session(db) as session:
        open_id = readers.open_period(session)["id"]
        session.execute(
            text("INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) VALUES (:p, 1, 2, gen_random_uuid())"),
            {"p": open_id},
        )
        session.commit()
    # an operator (or an archive run's detach) holding the open period's partition...
    holder = db.connect()
    holder.execute(text(f"LOCK TABLE clicks.{partitions.partition_name(open_id)} IN ACCESS EXCLUSIVE MODE"))
    try:
        with Session(db) as session:
            session.execute(text("SET lock_timeout = '2s'"))
            page = periods.export_page(session, PERIOD, None, 1000)  # ...holds up nothing of a sealed period's export
            assert page["count"] == len(world.clicks)
            session.rollback()
    finally:
        holder.rollback()
        holder.close()
    holder = db.connect()
    holder.execute(text(f"LOCK TABLE clicks.{partitions.partition_name(PERIOD)} IN ACCESS EXCLUSIVE MODE"))
    try:
        with Session(db) as session:
            session.execute(text("SET lock_timeout = '2s'"))
            assert [c["thing_id"] for c in readers.reader_period(session, 1)["clicks"]] == [2]
            session.rollback()
    finally:
        holder.rollback()
        holder.close()


@pytest.fixture
def settled_world(world, db, start_services, database_url, amqp_uri, monkeypatch):
    """The small world's period settled, the open period sealed after it (not settled), the
    settlement service answering, and the ops command's environment pointing at them."""
    from services.settlement.service import SettlementService

    with Session(db) as session:
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        session.commit()
    assert batch.Batch(db, sources(db)).run(PERIOD)["state"] == "settled"
    with Session(db) as session:
        periods.seal(session)
        session.commit()
    start_services(SettlementService)
    monkeypatch.setenv("CLICKS_DATABASE_URL", database_url)
    monkeypatch.setenv("AMQP_URI", amqp_uri)
    yield world
    dispose_engines()


def archived_rows(path) -> list[tuple[int, int]]:
    with gzip.open(path, "rt", newline="") as f:
        return sorted((int(r["user_id"]), int(r["thing_id"])) for r in csv.DictReader(f))


def test_archiving_writes_a_settled_periods_clicks_to_a_file_and_drops_its_partition(settled_world, db, tmp_path):
    folder = tmp_path / "archive"
    assert ops.main(["archive", "--keep", "1", "--to", str(folder), "--dry-run"]) == 0
    assert not folder.exists()

    assert ops.main(["archive", "--keep", "1", "--to", str(folder)]) == 0
    target = folder / f"clicks-{PERIOD}.csv.gz"
    assert archived_rows(target) == sorted(settled_world.clicks)
    digest, name = (folder / f"clicks-{PERIOD}.csv.gz.sha256").read_text().split()
    assert name == target.name and digest == hashlib.sha256(target.read_bytes()).hexdigest()
    with db.connect() as conn:
        assert partition_of(conn, PERIOD) is None
        assert conn.execute(text(f"SELECT to_regclass('clicks.{partitions.partition_name(PERIOD)}')")).scalar() is None
        archived = conn.execute(text("SELECT archived_at IS NOT NULL, archived_clicks FROM clicks.periods WHERE id = :p"), {"p": PERIOD}).first()
        assert tuple(archived) == (True, len(settled_world.clicks))
        # the period sealed after it is not settled: it stays, even past the retention of one
        assert conn.execute(text("SELECT count(*) FROM clicks.periods WHERE state = 'sealed' AND archived_at IS NULL")).scalar() == 1
    with Session(db) as session, pytest.raises(InvalidParameters, match="archived"):
        periods.export_page(session, PERIOD, None, 1000)
    # run again: nothing more to do
    assert ops.main(["archive", "--keep", "1", "--to", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [target.name, target.name + ".sha256"]


def test_an_archive_run_killed_after_the_detach_is_finished_by_the_next_run(settled_world, db, tmp_path):
    from services.common.db import engine_for

    engine = engine_for(str(db.url.render_as_string(hide_password=False)))
    partitions.detach(engine, PERIOD)  # the run was killed here: detached, not yet written out
    with db.connect() as conn:
        assert partition_of(conn, PERIOD) is None
        assert conn.execute(text("SELECT count(*) FROM clicks.clicks WHERE period_id = :p"), {"p": PERIOD}).scalar() == 0
    (tmp_path / f"clicks-{PERIOD}.csv.gz.partial").write_bytes(b"half a file")
    assert ops.main(["archive", "--keep", "1", "--to", str(tmp_path)]) == 0
    assert archived_rows(tmp_path / f"clicks-{PERIOD}.csv.gz") == sorted(settled_world.clicks)
    assert not (tmp_path / f"clicks-{PERIOD}.csv.gz.partial").exists()
    with db.connect() as conn:
        assert conn.execute(text("SELECT archived_clicks FROM clicks.periods WHERE id = :p"), {"p": PERIOD}).scalar() == len(settled_world.clicks)
