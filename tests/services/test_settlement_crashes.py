"""The settlement batch killed at each of its steps and run again, run twice at once, and woken by
a duplicated ``period.sealed``: the ledger is always the one an uninterrupted run writes."""
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from nameko.standalone.events import event_dispatcher
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from services.accounts.service import AccountsService
from services.clicks.service import ClicksService
from services.clicks.models import outbox as clicks_outbox
from services.common.outbox import record
from services.settlement import batch, ledger
from services.settlement.batch_service import SettlementBatchService
from tests.databases import cloned_database
from tests.factories import eventually
from tests.settlement_world import PERIOD, SEALED_AT, all_postings, settlement_postings, small_world, sources

ROOT = Path(__file__).resolve().parents[2]
DIE_POINTS = ("import-chunk", "imported", "posting", "posted")


@pytest.fixture
def uninterrupted(infra, template_database):
    """The ledger of the same world settled in one go, in a database of its own."""
    with cloned_database(infra, template_database) as url:
        engine = create_engine(url)
        try:
            w = small_world()
            with Session(engine) as session:
                w.seed(session)
                batch.begin(session, PERIOD, SEALED_AT, len(w.clicks), "rollover", 1000)
                session.commit()
            assert batch.Batch(engine, sources(engine)).run(PERIOD)["state"] == "settled"
            with Session(engine) as session:
                yield all_postings(session)
        finally:
            engine.dispose()


def ops_settle(amqp_uri, database_url, **env):
    environment = dict(
        os.environ, AMQP_URI=amqp_uri, SETTLEMENT_DATABASE_URL=database_url, SETTLEMENT_CHUNK_ROWS="4", PYTHONWARNINGS="ignore",
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.settlement.ops", "settle", PERIOD],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def state_of(db):
    with Session(db) as session:
        return batch.status(session, PERIOD)


@pytest.mark.parametrize("die_at", DIE_POINTS)
def test_killed_at_each_step_then_run_again_writes_the_uninterrupted_ledger(
    die_at, world, db, database_url, amqp_uri, start_services, uninterrupted
):
    start_services(ClicksService, AccountsService)
    crashed = ops_settle(amqp_uri, database_url, SETTLEMENT_DIE_AT=die_at)
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137, "the fault hook did not fire"
    left = state_of(db)
    assert left["state"] == ("settled" if die_at == "posted" else "settling")
    if die_at == "import-chunk":
        assert 0 < left["totals"]["clicks_moved"] < len(world.clicks)
    with Session(db) as session:
        assert (settlement_postings(session) == {}) == (die_at != "posted")

    rerun = ops_settle(amqp_uri, database_url)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert '"state": "settled"' in out
    if die_at != "posted":
        assert "posted" in err  # the progress line reached the end
    assert state_of(db)["state"] == "settled"
    with Session(db) as session:
        assert all_postings(session) == uninterrupted
        assert settlement_postings(session) == world.expected()["deltas"]
        assert session.execute(text("SELECT count(*) FROM settlement.period_clicks")).scalar() == len(world.clicks)
        assert ledger.check(session)["ok"]
        announced = session.execute(text("SELECT count(*) FROM settlement.outbox WHERE event_type = 'period.settled'")).scalar()
    assert announced == 1


def test_two_settlement_processes_at_once_settle_once(world, db, database_url, amqp_uri, start_services, uninterrupted):
    start_services(ClicksService, AccountsService)
    with Session(db) as session:
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        session.commit()
    first, second = ops_settle(amqp_uri, database_url), ops_settle(amqp_uri, database_url)
    outcomes = sorted([first.wait(timeout=60), second.wait(timeout=60)])
    # both finish: one settles, the other found the batch busy (3) or the period already settled (0)
    assert outcomes in ([0, 0], [0, 3]), outcomes
    with Session(db) as session:
        assert all_postings(session) == uninterrupted
        assert session.execute(text("SELECT count(*) FROM settlement.transactions WHERE kind = 'period_settlement'")).scalar() == 1


def test_period_sealed_delivered_twice_settles_once(world, db, amqp_uri, start_services, uninterrupted):
    start_services(ClicksService, AccountsService, SettlementBatchService)
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri, "serializer": "json"})
    with Session(db) as session:  # the envelope the clicks service writes, published by hand below
        sealed = record(session, clicks_outbox, "period.sealed", {"period": PERIOD, "next_period": "2026-11", "clicks": len(world.clicks),
                                                                  "readers": 5, "sealed_at": SEALED_AT})
        session.rollback()
    dispatch("clicks", "period.sealed", sealed)
    dispatch("clicks", "period.sealed", sealed)
    dispatch("clicks", "period.sealed", {**sealed, "event_id": str(uuid.uuid4())})  # the same fact, published again
    assert eventually(lambda: (state_of(db) or {}).get("state") == "settled", timeout=20)
    time.sleep(0.5)  # let the duplicates be handled too
    with Session(db) as session:
        assert all_postings(session) == uninterrupted
        assert session.execute(text("SELECT count(*) FROM settlement.outbox WHERE event_type = 'period.settled'")).scalar() == 1
