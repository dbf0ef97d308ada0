"""Each money rule's SQL twin (what the batch, escrow and statements run) against its Python rule
(``services.settlement.rules``), on the real database, for generated inputs."""
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.clicks import periods
from services.common.db import copy
from services.settlement import batch, ledger, rules
from tests.factories import sealed_click_period

cents = st.integers(min_value=0, max_value=10**12)
maybe_cents = st.none() | cents
on_db = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@on_db
@given(budget=maybe_cents, wallet=maybe_cents)
def test_the_sql_charge_and_means_are_the_python_rules(db, budget, wallet):
    with db.connect() as conn:
        charged, means = conn.execute(
            text("SELECT settlement.charge_amount(:b, :w), settlement.has_means(:b, :w)"), {"b": budget, "w": wallet}
        ).one()
    assert charged == rules.charge_amount(budget, wallet)
    assert means is rules.has_means(budget, wallet)


PERIOD = "2026-09"

readers = st.dictionaries(
    keys=st.integers(min_value=1, max_value=2**40),
    # the reader's period amount and the things they clicked
    values=st.tuples(st.integers(min_value=0, max_value=10**9), st.lists(st.integers(min_value=1, max_value=2**40), min_size=1, max_size=40, unique=True)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(readers=readers, fee_bps=st.integers(min_value=0, max_value=10000))
def test_each_readers_shares_are_the_python_split_of_their_amount_after_the_fee(db, readers, fee_bps):
    """The whole way a share is made: the clicks service's export gives each click its position
    and its reader's number of clicks, and ``settlement.reader_shares`` turns them into cents."""
    with Session(db) as session:
        sealed_click_period(session, PERIOD, "2026-09-01", "2026-10-01")
        name = batch.partition_name(PERIOD)
        session.execute(
            text(f"CREATE TABLE IF NOT EXISTS settlement.\"{name}\" PARTITION OF settlement.period_clicks "
                 f"(period DEFAULT '{PERIOD}') FOR VALUES IN ('{PERIOD}')")
        )
        session.execute(
            text(f"CREATE TABLE IF NOT EXISTS settlement.\"{batch.period_table('charges', PERIOD)}\" PARTITION OF settlement.charges "
                 f"FOR VALUES IN ('{PERIOD}')")
        )
        for table, column in (("clicks.clicks", "period_id"), ("settlement.period_clicks", "period"), ("settlement.charges", "period")):
            session.execute(text(f"DELETE FROM {table} WHERE {column} = :p"), {"p": PERIOD})
        for user_id, (amount, thing_ids) in readers.items():
            session.execute(
                text(
                    "INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) "
                    "SELECT :p, :u, t, gen_random_uuid() FROM unnest(CAST(:t AS bigint[])) t"
                ),
                {"p": PERIOD, "u": user_id, "t": thing_ids},
            )
            session.execute(
                text(
                    "INSERT INTO settlement.charges (period, user_id, kind, amount, fee, clicks, wallet_id) "
                    "VALUES (:p, :u, 'split', :a, settlement.platform_fee(:a, :bps), :n, :w)"
                ),
                {"p": PERIOD, "u": user_id, "a": amount, "bps": fee_bps, "n": len(thing_ids), "w": ledger.account(session, "wallet", user_id)},
            )
        session.commit()
        page = periods.export_page(session, PERIOD, None, 10**6)
        copy(session, f'COPY settlement."{name}" (user_id, thing_id, rank, clicks) FROM STDIN', io.StringIO(page["rows"]))
        found = {}
        for row in session.execute(text("SELECT user_id, thing_id, share FROM settlement.reader_shares WHERE period = :p"), {"p": PERIOD}):
            found.setdefault(row.user_id, {})[row.thing_id] = row.share
        session.commit()
    expected = {
        user_id: rules.split_shares(amount - rules.platform_fee(amount, fee_bps), thing_ids, user_id)
        for user_id, (amount, thing_ids) in readers.items()
    }
    assert found == expected
