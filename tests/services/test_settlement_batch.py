"""The settlement batch on the real database: the split, the fee, escrow, statements, re-runs."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from services.common import contracts
from services.common.money import Money
from services.common.outbox import TableRecorder
from services.settlement import batch, escrow, ledger, rules, statements
from services.settlement.models import outbox
from tests.factories import sealed_click_period
from tests.settlement_world import PERIOD, SEALED_AT, World, all_postings, settlement_postings, sources


def settle(db, world: World, policy="rollover", **kwargs):
    with Session(db) as session:
        batch.begin(session, world.period, SEALED_AT, len(world.clicks), policy, world.fee_bps)
        session.commit()
    return batch.Batch(db, sources(db), chunk_rows=kwargs.pop("chunk_rows", 4), **kwargs).run(world.period)


def events_of(db, event_type):
    with db.connect() as conn:
        return [r.body["data"] for r in conn.execute(text("SELECT body FROM settlement.outbox WHERE event_type = :t ORDER BY id"), {"t": event_type})]


def test_settlement_moves_every_cent_by_the_rules(db, world):
    result = settle(db, world)
    assert result["state"] == "settled"
    expected = world.expected()
    with Session(db) as session:
        assert settlement_postings(session) == expected["deltas"]
        assert ledger.check(session)["ok"]
        # a wallet below its budget pays what it holds; the fee is 10% rounded down
        charge = session.execute(text("SELECT amount, fee FROM settlement.charges WHERE user_id = 103")).one()
        assert (charge.amount, charge.fee) == (333, 33)
    totals = result["totals"]
    assert totals["charged"] == totals["fees"] + totals["revenue"] + totals["escrow"] + totals["charity"]
    assert totals["clicks"] == len(world.clicks) and totals["readers"] == 5
    assert totals["escrow"] == sum(v for (kind, _), v in expected["deltas"].items() if kind == "escrow")


def test_statements_add_up_to_the_ledger(db, world):
    settle(db, world)
    expected = world.expected()
    with Session(db) as session:
        for reader, shares in expected["shares"].items():
            found = statements.statement(session, reader, PERIOD)
            assert {line["thing_id"]: line["amount"] for line in found["spent"]} == shares
            assert found["charged"]["amount"] == found["charged"]["fee"] + sum(shares.values())
            assert -found["charged"]["amount"] == expected["deltas"][("wallet", reader)]
            assert {line["destination"] for line in found["spent"] if world.things[line["thing_id"]] is None} <= {"escrow"}
        creator = statements.statement(session, 11, PERIOD)
        assert creator["charged"] is None
        assert creator["earned"]["amount"] == expected["deltas"][("revenue", 11)] == ledger.balance(session, "revenue", 11).cents
        assert statements.revenue_by_period(session, 11) == [{"period": PERIOD, "amount": expected["deltas"][("revenue", 11)]}]


def test_settled_period_publishes_totals_revenue_and_means(db, world):
    result = settle(db, world)
    settled = events_of(db, "period.settled")
    assert len(settled) == 1 and settled[0]["period"] == PERIOD and settled[0]["charged"] == result["totals"]["charged"]
    credited = {e["user_id"]: e["amount"] for e in events_of(db, "revenue.credited")}
    expected = world.expected()["deltas"]
    assert credited == {owner: amount for (kind, owner), amount in expected.items() if kind == "revenue"}
    # reader 102 had exactly their budget: after paying it, the wallet is below the budget
    flips = {r["user_id"]: r["has_means"] for e in events_of(db, "means.batch_changed") for r in e["readers"]}
    # 102 paid exactly its budget and can no longer; 103 could not pay its budget before either;
    # the others still hold their budgets
    assert flips == {102: False}


def test_a_second_run_and_a_second_begin_change_nothing(db, world):
    first = settle(db, world)
    with Session(db) as session:
        before = all_postings(session)
        assert batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "charity", 0) is False
        session.commit()
    again = batch.Batch(db, sources(db)).run(PERIOD)
    assert again["totals"] == first["totals"] and again["policy"] == "rollover"
    with Session(db) as session:
        assert all_postings(session) == before
    assert len(events_of(db, "period.settled")) == 1


def test_charity_policy_takes_the_budgets_of_readers_without_clicks(db, world):
    result = settle(db, world, policy="charity")
    with Session(db) as session:
        assert settlement_postings(session) == world.expected("charity")["deltas"]
        assert ledger.balance(session, "charity").cents == 250  # reader 106: budget 300, wallet 250; 107 has nothing
        assert ledger.check(session)["ok"]
    assert result["totals"]["charity_readers"] == 1


def test_the_budget_in_force_at_the_seal_is_charged(db, world):
    with Session(db) as session:
        # reader 104 raised the budget after the period was sealed
        session.execute(text("UPDATE settlement.budgets SET amount = 4000, changed_at = '2026-11-02' WHERE user_id = 104"))
        session.execute(text("INSERT INTO settlement.budget_changes (user_id, amount, changed_at) VALUES (104, 4000, '2026-11-02')"))
        session.commit()
    settle(db, world)
    with Session(db) as session:
        assert session.execute(text("SELECT amount FROM settlement.charges WHERE user_id = 104")).scalar() == 200


def test_a_count_that_does_not_match_the_seal_fails_with_the_reason(db, world):
    with Session(db) as session:
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks) + 1, "rollover", 1000)
        session.commit()
    with pytest.raises(batch.SettlementFailed, match="moved 15 clicks"):
        batch.Batch(db, sources(db)).run(PERIOD)
    with Session(db) as session:
        found = batch.status(session, PERIOD)
        assert found["state"] == "failed" and "sealed with 16" in found["reason"]
        assert settlement_postings(session) == {}


def test_claimed_escrow_is_released_and_stale_escrow_refunded_pro_rata(db, world):
    settle(db, world)
    expected = world.expected()
    shares = expected["shares"]
    recorder = TableRecorder(outbox)
    with Session(db) as session:
        escrow.lock(session)
        assert escrow.refund_stale(session, recorder, hold_days=30) == []  # nothing is old enough yet
        # thing 4 is claimed by user 14; thing 5 stays unclaimed
        session.execute(text("UPDATE settlement.things SET owner_id = 14, verified = true WHERE thing_id = 4"))
        released = escrow.release_owned(session, recorder, [4])
        session.commit()
        held = expected["deltas"][("escrow", 4)]
        assert released == [
            {"thing_id": 4, "user_id": 14, "amount": held, "currency": "EUR", "periods": [PERIOD], "to_revenue": held, "to_wallet": 0}
        ]
        assert ledger.balance(session, "revenue", 14).cents == expected["deltas"][("escrow", 4)]
        assert ledger.balance(session, "escrow", 4).cents == 0
        wallets_before = {r: ledger.balance(session, "wallet", r).cents for r in world.readers}
        escrow.lock(session)
        refunded = escrow.refund_stale(session, recorder, hold_days=0)
        session.commit()
        assert refunded == [{"period": PERIOD, "thing_id": 5, "amount": expected["deltas"][("escrow", 5)]}]
        for reader in world.readers:
            back = shares.get(reader, {}).get(5, 0)
            assert ledger.balance(session, "wallet", reader).cents == wallets_before[reader] + back
        assert ledger.balance(session, "escrow", 5).cents == 0
        assert ledger.check(session)["ok"]
        # each credit left escrow once: running both again moves nothing
        escrow.lock(session)
        assert escrow.refund_stale(session, recorder, hold_days=0) == []
        assert escrow.release_owned(session, recorder) == []
        session.commit()
        statement = statements.statement(session, 102, PERIOD)
        destinations = {line["thing_id"]: line["destination"] for line in statement["spent"]}
        assert destinations[4] == "revenue" and destinations[5] == "refunded"
        assert statement["refunded"] == shares[102][5]
        assert statements.statement(session, 14, PERIOD)["earned"]["things"][0]["source"] == "escrow"
    refunds = events_of(db, "escrow.refunded")
    assert [(e["thing_id"], e["amount"], e["readers"]) for e in refunds] == [(5, expected["deltas"][("escrow", 5)], 2)]


def test_an_empty_period_settles_to_nothing(db):
    empty = World(readers={}, things={}, clicks=[])
    with Session(db) as session:
        empty.seed(session)
    result = settle(db, empty)
    assert result["state"] == "settled" and result["totals"]["charged"] == 0
    with Session(db) as session:
        assert settlement_postings(session) == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    to_split=st.integers(min_value=0, max_value=10**9),
    n=st.integers(min_value=1, max_value=60),
    reader=st.integers(min_value=1, max_value=2**40),
    fee_amount=st.integers(min_value=0, max_value=10**12),
    fee_bps=st.integers(min_value=0, max_value=10000),
)
def test_the_sql_split_and_fee_are_the_python_rules(db, to_split, n, reader, fee_amount, fee_bps):
    thing_ids = list(range(1, n + 1))
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT g - 1 AS rank, settlement.split_share(:a, :n, g - 1, :r) AS share FROM generate_series(1, :n) g ORDER BY g"),
            {"a": to_split, "n": n, "r": reader},
        ).all()
        fee = conn.execute(text("SELECT settlement.platform_fee(:a, :b)"), {"a": fee_amount, "b": fee_bps}).scalar()
    assert [r.share for r in rows] == [rules.split_shares(to_split, thing_ids, reader)[t] for t in thing_ids]
    assert fee == rules.platform_fee(fee_amount, fee_bps)


def test_status_is_pending_then_reads_back_the_settled_totals_the_run_gave(db, world):
    """What ``/admin/settlements/PERIOD`` shows: pending with the clicks to move, then, read
    anew, exactly the totals the run answered, as JSON."""
    with Session(db) as session:
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        session.commit()
        pending = batch.status(session, PERIOD)
    assert pending["state"] == "pending" and pending["totals"] == {"clicks": 15, "clicks_moved": 0}
    settled = settle(db, world)
    with Session(db) as session:
        read_back = batch.status(session, PERIOD)
    assert json.loads(json.dumps(read_back)) == json.loads(json.dumps(settled))
    assert read_back["state"] == "settled" and read_back["settled_at"] is not None
    expected = world.expected()
    assert read_back["totals"]["charged"] == -sum(v for (kind, _), v in expected["deltas"].items() if kind == "wallet" and v < 0)
    assert read_back["totals"]["fees"] == expected["deltas"][("fees", None)]


def test_every_settlement_event_validates_against_its_published_schema(db, world):
    settle(db, world, policy="charity")
    recorder = TableRecorder(outbox)
    with Session(db) as session:
        escrow.lock(session)
        session.execute(text("UPDATE settlement.things SET owner_id = 14, verified = true WHERE thing_id = 4"))
        escrow.release_owned(session, recorder)
        escrow.refund_stale(session, recorder, hold_days=0)
        session.commit()
    with db.connect() as conn:
        bodies = [r.body for r in conn.execute(text("SELECT body FROM settlement.outbox ORDER BY id"))]
    types = {body["type"] for body in bodies}
    assert {"period.settled", "revenue.credited", "means.batch_changed", "escrow.released", "escrow.refunded"} <= types
    for body in bodies:
        contracts.validate(body)


def test_a_reader_who_claims_a_page_they_flattred_gets_their_own_share_back_in_the_wallet(db, world):
    settle(db, world)
    shares = world.expected()["shares"]
    recorder = TableRecorder(outbox)
    with Session(db) as session:
        wallet_before = ledger.balance(session, "wallet", 102).cents
        escrow.lock(session)
        session.execute(text("UPDATE settlement.things SET owner_id = 102, verified = true WHERE thing_id = 5"))  # 102 and 103 flattred it
        [released] = escrow.release_owned(session, recorder, [5])
        session.commit()
        assert released["to_wallet"] == shares[102][5] and released["to_revenue"] == shares[103][5]
        assert ledger.balance(session, "wallet", 102).cents == wallet_before + shares[102][5]
        assert ledger.balance(session, "revenue", 102).cents == shares[103][5]
        assert ledger.check(session)["ok"]
    credited = [e for e in events_of(db, "revenue.credited") if e["source"] == "escrow"]
    assert credited == [{"user_id": 102, "amount": shares[103][5], "currency": "EUR", "source": "escrow", "periods": [PERIOD], "thing_id": 5}]


def test_a_claim_accounts_accepted_a_moment_ago_wins_over_the_refund(db, world):
    settle(db, world)
    expected = world.expected()["deltas"]
    recorder = TableRecorder(outbox)
    asked = []

    def owners_of(ids):
        asked.append(ids)
        return {str(i): {"owner_id": 14 if i == 5 else None, "verified": i == 5} for i in ids}

    with Session(db) as session:
        escrow.learn_owners_of_stale(session, owners_of, hold_days=0)
        escrow.lock(session)
        refunded = escrow.refund_stale(session, recorder, hold_days=0)
        session.commit()
        assert asked == [[4, 5]]
        assert [r["thing_id"] for r in refunded] == [4]
        assert ledger.balance(session, "revenue", 14).cents == expected[("escrow", 5)]
        assert ledger.check(session)["ok"]


def test_things_the_replica_never_heard_of_are_asked_of_accounts(db, world):
    with Session(db) as session:
        session.execute(text("DELETE FROM settlement.things WHERE thing_id IN (1, 4)"))
        session.commit()
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        session.commit()
    asked = []

    def thing_owners(ids):
        asked.append(ids)
        return {"1": {"owner_id": 11, "verified": True}, "4": {"owner_id": None, "verified": False}}

    sources_with_owners = sources(db)
    sources_with_owners.thing_owners = thing_owners
    batch.Batch(db, sources_with_owners).run(PERIOD)
    assert asked == [[1, 4]]
    with Session(db) as session:
        assert settlement_postings(session) == world.expected()["deltas"]


def test_periods_settle_in_the_order_they_were_sealed(db, world):
    with Session(db) as session:
        sealed_click_period(session, "2026-10.2", "2026-11-01", "2026-11-02")
        session.execute(
            text("INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) VALUES ('2026-10.2', 101, 6, gen_random_uuid())")
        )
        session.commit()
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        batch.begin(session, "2026-10.2", "2026-11-02T00:00:00+00:00", 1, "rollover", 1000)
        session.commit()
    later = batch.Batch(db, sources(db)).run("2026-10.2")
    assert later["state"] == "settled"
    with Session(db) as session:
        assert batch.status(session, PERIOD)["state"] == "settled"
        first, second = session.execute(
            text("SELECT settled_at FROM settlement.settlements WHERE period IN (:a, :b) ORDER BY period"), {"a": PERIOD, "b": "2026-10.2"}
        ).scalars().all()
        assert first < second
        # 101 paid 500 of 1000 for the first period, then 500 for the second
        assert ledger.balance(session, "wallet", 101).cents == 0


def test_a_wallet_debited_while_the_batch_runs_fails_it_cleanly_and_the_retry_settles(db, world):
    """An operator takes money from a wallet between the batch reading it and posting: the
    ledger refuses the negative wallet, nothing of the batch stays, and the next attempt (the
    runner retries failed settlements) charges what the wallet holds then."""

    class DebitedMidway(batch.Batch):
        def _credit(self, session, params):
            super()._credit(session, params)
            with Session(db) as other:
                ledger.transfer(other, "adjustment", "take-100", ledger.account(other, "wallet", 103), ledger.account(other, "adjustments"),
                                Money(100), {"reason": "test"})
                other.commit()

    with Session(db) as session:
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        session.commit()
    with pytest.raises(batch.SettlementFailed):
        DebitedMidway(db, sources(db)).run(PERIOD)
    with Session(db) as session:
        failed = batch.status(session, PERIOD)
        assert failed["state"] == "failed" and failed["attempts"] == 1 and failed["reason"]
        assert settlement_postings(session) == {}
        assert session.execute(text("SELECT count(*) FROM settlement.charges")).scalar() == 0
    retried = batch.Batch(db, sources(db)).run(PERIOD)
    assert retried["state"] == "settled" and retried["attempts"] == 2
    with Session(db) as session:
        assert session.execute(text("SELECT amount FROM settlement.charges WHERE user_id = 103")).scalar() == 233
        assert ledger.balance(session, "wallet", 103).cents == 0
        assert ledger.check(session)["ok"]


def partitions_of(session, table: str) -> dict[str, int]:
    """``{partition: rows}`` of a partitioned table."""
    rows = session.execute(text(f"SELECT CAST(tableoid::regclass AS text) AS part, count(*) AS n FROM settlement.{table} GROUP BY 1"))
    return {r.part: r.n for r in rows}


def settle_a_second_period(db, runner=batch.Batch) -> dict:
    """Period 2026-10.2, sealed after the world's: reader 102 flattred thing 6; settled by ``runner``."""
    with Session(db) as session:
        sealed_click_period(session, "2026-10.2", "2026-11-01", "2026-11-02")
        session.execute(
            text("INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) VALUES ('2026-10.2', 102, 6, gen_random_uuid())")
        )
        session.commit()
        batch.begin(session, "2026-10.2", "2026-11-02T00:00:00+00:00", 1, "rollover", 1000)
        session.commit()
    return runner(db, sources(db)).run("2026-10.2")


def test_each_period_has_partitions_of_its_own_and_a_reader_is_charged_once_per_period(db, world):
    """A period's charges and credits are written into a table of their own, attached to the
    partitioned tables once complete: the next period gets its own, and the primary keys hold
    across them as before."""
    settle(db, world)
    assert settle_a_second_period(db)["state"] == "settled"
    with Session(db) as session:
        assert partitions_of(session, "charges") == {'settlement.charges_2026_10': 5, 'settlement.charges_2026_10_2': 1}
        assert set(partitions_of(session, "credits")) == {'settlement.credits_2026_10', 'settlement.credits_2026_10_2'}
        # the split's joins are planned from the partitioned tables' own statistics: there are some
        inherited = session.execute(
            text("SELECT tablename, attname, n_distinct FROM pg_stats WHERE schemaname = 'settlement' AND inherited "
                 "AND (tablename, attname) IN (('charges', 'user_id'), ('credits', 'thing_id'))")
        ).all()
        assert sorted(inherited) == [("charges", "user_id", -1.0), ("credits", "thing_id", -1.0)]
        assert ledger.check(session)["ok"]
        wallet = ledger.account(session, "wallet", 102)
        with pytest.raises(IntegrityError, match="duplicate key"):
            session.execute(
                text("INSERT INTO settlement.charges (period, user_id, kind, amount, fee, clicks, wallet_id) VALUES (:p, 102, 'split', 1, 0, 1, :w)"),
                {"p": PERIOD, "w": wallet},
            )
        session.rollback()
        with pytest.raises(IntegrityError, match="charged_from_a_wallet"):
            session.execute(text("INSERT INTO settlement.charges (period, user_id, kind, amount, fee, clicks) VALUES (:p, 999, 'split', 1, 0, 1)"),
                            {"p": PERIOD})
        session.rollback()
        with pytest.raises(DBAPIError, match="no partition"):
            session.execute(text("INSERT INTO settlement.charges (period, user_id, kind, amount, fee, clicks) VALUES ('2026-12', 102, 'split', 1, 0, 1)"))


def test_the_partitioning_migration_moves_settled_periods_both_ways(db, database_url, world):
    """Migration 0012 on a database with a settled period: downgraded, its charges and credits are
    in plain tables again; upgraded, in the period's partitions; statements read the same."""
    from alembic import command

    from tests.databases import migrate_test_database

    settle(db, world)

    def snapshot():
        with Session(db) as session:
            return (
                session.execute(text("SELECT period, user_id, kind, amount, fee, clicks FROM settlement.charges ORDER BY period, user_id")).all(),
                session.execute(text("SELECT * FROM settlement.credits ORDER BY period, thing_id")).all(),
                [statements.statement(session, reader, PERIOD) for reader in sorted(world.readers)],
                statements.statement(session, 11, PERIOD),
            )

    def wallets_charged():
        with Session(db) as session:
            return session.execute(text("SELECT user_id, wallet_id FROM settlement.charges ORDER BY user_id")).all()

    def keys_and_indexes():
        with Session(db) as session:
            return sorted(session.execute(text("SELECT tablename, indexname FROM pg_indexes WHERE tablename IN ('charges', 'credits')")).all())

    settled, charged_from = snapshot(), wallets_charged()
    migrate_test_database(db, database_url, "settlement", command.downgrade, "0011")
    with Session(db) as session:
        kinds = dict(session.execute(text("SELECT relname, relkind FROM pg_class WHERE relname IN ('charges', 'credits')")).all())
        assert kinds == {"charges": "r", "credits": "r"}
    before_0012 = keys_and_indexes()
    assert before_0012 == [("charges", "charges_pkey"), ("credits", "credits_by_owner"), ("credits", "credits_held"), ("credits", "credits_pkey")]
    assert snapshot() == settled
    migrate_test_database(db, database_url, "settlement", command.upgrade, "head")
    with Session(db) as session:
        assert partitions_of(session, "charges") == {"settlement.charges_2026_10": 5}
        assert set(partitions_of(session, "credits")) == {"settlement.credits_2026_10"}
    assert snapshot() == settled
    # the wallets found again from the accounts are the ones the batch charged
    assert wallets_charged() == charged_from and all(wallet is not None for _, wallet in charged_from)
    assert [index for index in keys_and_indexes() if "2026" not in index[1]] == before_0012
    # and the next period settles into a partition of its own, as on a database made at 0012
    assert settle_a_second_period(db)["state"] == "settled"
    with Session(db) as session:
        assert partitions_of(session, "charges")["settlement.charges_2026_10_2"] == 1
        assert ledger.check(session)["ok"]


def test_a_readers_records_answer_while_a_batch_has_attached_its_partitions_and_not_yet_committed(db, world):
    """The batch attaches its period's charges and credits in its own transaction, which lasts
    until the period is posted. A reader asking for their records meanwhile (every period's
    charges and credits) is answered at once, from what was committed before."""
    from services.settlement import overview

    settle(db, world)
    seen = {}

    class ReadMidway(batch.Batch):
        def _post_ledger(self, session, params):
            super()._post_ledger(session, params)
            with Session(db) as other:
                other.execute(text("SET lock_timeout = '2s'"))  # a wait would fail the read, not hang it
                seen["records"] = overview.export(other, 102)
                other.rollback()

    assert settle_a_second_period(db, ReadMidway)["state"] == "settled"
    assert [charge["period"] for charge in seen["records"]["charges"]] == [PERIOD]
    with Session(db) as session:
        assert [charge["period"] for charge in overview.export(session, 102)["charges"]] == [PERIOD, "2026-10.2"]
