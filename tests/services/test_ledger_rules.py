"""The ledger's rules hold in the database itself, whoever writes, and its check finds breaks."""
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from services.common.errors import InvalidParameters, PaymentDeclined, ProviderError
from services.common.money import Money
from services.common.outbox import TableRecorder
from services.settlement import deposits, ledger, money_flows
from services.settlement.models import outbox
from services.settlement.providers import ProviderResult, SandboxProvider, sandbox_outcome


def test_database_refuses_unbalanced_transactions(db):
    with Session(db) as session:
        wallet, clearing = ledger.account(session, "wallet", 1), ledger.account(session, "clearing")
        session.commit()
        session.execute(text("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('x', 'k')"))
        with pytest.raises(DBAPIError, match="does not balance"):
            session.execute(
                text("INSERT INTO settlement.postings (transaction_id, account_id, amount) "
                     "SELECT id, :w, 500 FROM settlement.transactions UNION ALL SELECT id, :c, -499 FROM settlement.transactions"),
                {"w": wallet, "c": clearing},
            )


def test_database_refuses_negative_wallets_and_changes_to_history(db, database_url):
    with Session(db) as session:
        deposits.deposit(session, TableRecorder(outbox), SandboxProvider(database_url), 1, Money(500), "d1")
        wallet, clearing = ledger.account(session, "wallet", 1), ledger.account(session, "clearing")
        with pytest.raises(ledger.InsufficientFunds):
            ledger.transfer(session, "spend", "s1", wallet, clearing, Money(501))
        session.commit()
        for statement in (
            "UPDATE settlement.postings SET amount = amount + 1",
            "DELETE FROM settlement.postings",
            "DELETE FROM settlement.transactions",
            "UPDATE settlement.ledger_accounts SET balance = 1000000",
        ):
            with pytest.raises(DBAPIError):
                session.execute(text(statement))
            session.rollback()
        assert ledger.balance(session, "wallet", 1) == Money(500)
        assert ledger.check(session)["ok"]


def test_a_statement_naming_many_accounts_moves_every_balance_by_the_bulk_path(db):
    """A settlement names tens of thousands of accounts in one INSERT; the trigger updates their
    balances with its bulk UPDATE (planned without nested loops) and keeps every rule: exact
    balances, negative wallets refused, unknown accounts refused, a statement of a few postings
    after it in the same session still exact, and the guard still refusing direct writes."""
    n = 12000  # above the trigger's 10,000 accounts
    with Session(db) as session:
        # the other side of every posting here: the operators' adjustments, so the ledger check holds
        clearing = ledger.account(session, "adjustments")
        session.execute(text("INSERT INTO settlement.ledger_accounts (kind, owner_id) SELECT 'wallet', u FROM generate_series(1, :n) u"), {"n": n})
        tx = session.execute(text("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('deposit', 'bulk') RETURNING id")).scalar()
        # wallet u gets u cents, in two postings for every third wallet (the deltas are summed)
        session.execute(
            text(
                "INSERT INTO settlement.postings (transaction_id, account_id, amount) "
                "SELECT :t, w.id, w.owner_id - w.owner_id / 2 * CAST(w.owner_id % 3 = 0 AS integer) "
                "FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' "
                "UNION ALL SELECT :t, w.id, w.owner_id / 2 FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' AND w.owner_id % 3 = 0 "
                "UNION ALL SELECT :t, :c, -(SELECT sum(u) FROM generate_series(1, :n) u)"
            ),
            {"t": tx, "c": clearing, "n": n},
        )
        wrong = session.execute(
            text("SELECT count(*) FROM settlement.ledger_accounts WHERE kind = 'wallet' AND balance <> owner_id")
        ).scalar()
        assert wrong == 0
        assert ledger.balance(session, "adjustments") == Money(-n * (n + 1) // 2)
        # a few postings after the bulk ones, in the same session: the small path, exact
        wallet = ledger.account(session, "wallet", 7)
        ledger.transfer(session, "spend", "after-bulk", wallet, clearing, Money(7))
        assert ledger.balance(session, "wallet", 7) == Money(0)
        session.commit()
        assert ledger.check(session)["ok"]

        def bulk(amount_sql: str, key: str) -> None:
            t = session.execute(text("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('x', :k) RETURNING id"), {"k": key}).scalar()
            session.execute(
                text(
                    f"INSERT INTO settlement.postings (transaction_id, account_id, amount) "
                    f"SELECT :t, w.id, {amount_sql} FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' AND w.owner_id > 7 "
                    f"UNION ALL SELECT :t, :c, -(SELECT sum({amount_sql}) FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' AND w.owner_id > 7)"
                ),
                {"t": t, "c": clearing},
            )

        # every wallet but one could pay 1 cent more than it holds: the whole statement is refused
        with pytest.raises(DBAPIError, match="no_negative_wallet_or_revenue"):
            bulk("-(w.owner_id + CAST(w.owner_id = 8 AS integer))", "too-much")
        session.rollback()
        # an account that does not exist, among many that do
        t = session.execute(text("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('x', 'ghost') RETURNING id")).scalar()
        with pytest.raises(DBAPIError, match="names an account that does not exist"):
            session.execute(
                text(
                    "INSERT INTO settlement.postings (transaction_id, account_id, amount) "
                    "SELECT :t, w.id, -1 FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' AND w.owner_id > 7 "
                    "UNION ALL SELECT :t, -1, (SELECT count(*) FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' AND w.owner_id > 7)"
                ),
                {"t": t},
            )
        session.rollback()
        # each account named once: the postings are the deltas
        bulk("-1", "one-cent-each")
        session.commit()
        # the balance guard, now once per statement, refuses a direct write whatever it matches
        for statement in ("UPDATE settlement.ledger_accounts SET balance = balance + 1", "UPDATE settlement.ledger_accounts SET balance = 1 WHERE id = -1"):
            with pytest.raises(DBAPIError, match="balances change only by posting"):
                session.execute(text(statement))
            session.rollback()
        # wallet 7 spent its 7 cents, wallets 8 and up one cent each, the others are untouched
        assert session.execute(
            text("SELECT count(*) FROM settlement.ledger_accounts WHERE kind = 'wallet' AND balance <> owner_id - CAST(owner_id > 7 AS integer)")
        ).scalar() == 1
        assert ledger.balance(session, "wallet", 7) == Money(0)
        assert ledger.check(session)["ok"]


def test_posting_is_idempotent_by_key(db):
    with Session(db) as session:
        wallet, clearing = ledger.account(session, "wallet", 2), ledger.account(session, "clearing")
        first = ledger.transfer(session, "deposit", "same-key", clearing, wallet, Money(300))
        again = ledger.transfer(session, "deposit", "same-key", clearing, wallet, Money(300))
        assert first.created and not again.created and first.transaction_id == again.transaction_id
        assert ledger.balance(session, "wallet", 2) == Money(300)
        with pytest.raises(ledger.UnbalancedTransaction):
            ledger.post(session, "bad", "k2", [(wallet, Money(1))])


@pytest.mark.slow
def test_random_sequences_of_deposits_payouts_and_failures_keep_the_invariants(database_url):
    """Hypothesis drives deposits (some declined), adjustments, payout requests (some above the
    revenue) and payout outcomes (some failing) on the real database; after every step the ledger
    check holds and every balance equals what the model expects."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    events = TableRecorder(outbox)
    provider = SandboxProvider(database_url)
    users = st.integers(1, 3)

    class Money_flows(RuleBasedStateMachine):
        @initialize()
        def reset(self):
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE settlement.postings DISABLE TRIGGER postings_append_only"))
                conn.execute(text("ALTER TABLE settlement.transactions DISABLE TRIGGER transactions_append_only"))
                conn.execute(text("ALTER TABLE settlement.ledger_accounts DISABLE TRIGGER ledger_accounts_kept"))
                conn.execute(text(
                    "TRUNCATE settlement.adjustments, settlement.deposits, settlement.payouts, settlement.postings, "
                    "settlement.transactions, settlement.ledger_accounts, settlement.means, settlement.outbox, settlement.sandbox_payments CASCADE"
                ))
                conn.execute(text("ALTER TABLE settlement.postings ENABLE TRIGGER postings_append_only"))
                conn.execute(text("ALTER TABLE settlement.transactions ENABLE TRIGGER transactions_append_only"))
                conn.execute(text("ALTER TABLE settlement.ledger_accounts ENABLE TRIGGER ledger_accounts_kept"))
            self.wallets = {u: 0 for u in range(1, 4)}
            self.revenue = {u: 0 for u in range(1, 4)}
            self.requested = []
            self.counter = 0

        def key(self):
            self.counter += 1
            return f"k{self.counter}"

        @rule(user=users, amount=st.integers(1, 5000))
        def deposit(self, user, amount):
            outcome = sandbox_outcome(amount)
            with Session(engine) as session:
                try:
                    deposits.deposit(session, events, provider, user, Money(amount), self.key())
                except (PaymentDeclined, ProviderError):
                    assert outcome != "approved"
                    return
            assert outcome == "approved"
            self.wallets[user] += amount

        @rule(user=users, amount=st.integers(1, 5000))
        def credit_revenue(self, user, amount):
            with Session(engine) as session:
                target, source = ledger.account(session, "revenue", user), ledger.account(session, "adjustments")
                ledger.transfer(session, "adjustment", self.key(), source, target, Money(amount))
                session.commit()
            self.revenue[user] += amount

        @rule(user=users, amount=st.integers(1, 8000))
        def request_payout(self, user, amount):
            with Session(engine) as session:
                try:
                    payout_id = money_flows.request_payout(session, events, user, Money(amount), self.key()).id
                    session.commit()
                except InvalidParameters:
                    session.rollback()
                    assert amount > self.revenue[user]
                    return
            assert amount <= self.revenue[user]
            self.revenue[user] -= amount
            self.requested.append((payout_id, user, amount))

        @precondition(lambda self: self.requested)
        @rule(data=st.data(), approved=st.booleans(), twice=st.booleans())
        def provider_answers(self, data, approved, twice):
            payout_id, user, amount = self.requested.pop(data.draw(st.integers(0, len(self.requested) - 1)))
            result = ProviderResult("approved" if approved else "declined", f"payout-{payout_id}", "declined")
            for _ in range(2 if twice else 1):  # a redelivered outcome changes nothing
                with Session(engine) as session:
                    money_flows.settle_payout(session, events, payout_id, result)
                    session.commit()
            if not approved:
                self.revenue[user] += amount


        @invariant()
        def books_hold(self):
            with Session(engine) as session:
                checked = ledger.check(session)
                assert checked["ok"], checked["failures"]
                for user in range(1, 4):
                    assert ledger.balance(session, "wallet", user).cents == self.wallets[user]
                    assert ledger.balance(session, "revenue", user).cents == self.revenue[user]

    Money_flows.TestCase.settings = settings(max_examples=30, stateful_step_count=15, deadline=None,
                                             suppress_health_check=list(HealthCheck), derandomize=True)
    try:
        Money_flows.TestCase().runTest()
    finally:
        engine.dispose()


def test_database_refuses_postings_to_accounts_or_transactions_that_do_not_exist(db):
    with Session(db) as session:
        wallet = ledger.account(session, "wallet", 1)
        session.commit()
        session.execute(text("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('x', 'k')"))
        with pytest.raises(DBAPIError, match="names an account that does not exist"):
            session.execute(
                text("INSERT INTO settlement.postings (transaction_id, account_id, amount) "
                     "SELECT id, :w, 500 FROM settlement.transactions UNION ALL SELECT id, :w + 1000, -500 FROM settlement.transactions"),
                {"w": wallet},
            )
        session.rollback()
        with pytest.raises(DBAPIError, match="names a transaction that does not exist"):
            session.execute(
                text("INSERT INTO settlement.postings (transaction_id, account_id, amount) VALUES (424242, :w, 5), (424242, :w, -5)"),
                {"w": wallet},
            )
        session.rollback()
        # both faults in one statement: the unbalanced transaction is the one reported
        session.execute(text("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('x', 'k2')"))
        with pytest.raises(DBAPIError, match="does not balance") as refused:
            session.execute(
                text("INSERT INTO settlement.postings (transaction_id, account_id, amount) "
                     "SELECT id, :w, 7 FROM settlement.transactions WHERE idempotency_key = 'k2' "
                     "UNION ALL SELECT 424242, :w, 5 UNION ALL SELECT 424242, :w, -5"),
                {"w": wallet},
            )
        assert refused.value.orig.pgcode == "23514"  # check_violation
        session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("DELETE FROM settlement.ledger_accounts"))


def test_postings_made_before_they_were_keyed_by_account_are_read_the_same_after(db, database_url):
    """Migration 0011 rebuilds the postings' key as (account, id): what was posted before it still
    adds up, and a user's records list their postings in the order they were made, then on."""
    from alembic import command

    from services.settlement import overview
    from tests.databases import migrate_test_database

    migrate_test_database(db, database_url, "settlement", command.downgrade, "0010")
    with Session(db) as session:
        wallet, added = ledger.account(session, "wallet", 7), ledger.account(session, "adjustments")
        for key, cents in (("a", 300), ("b", 200), ("c", 100)):
            ledger.transfer(session, "adjustment", f"before-0011-{key}", added, wallet, Money(cents))
        ledger.transfer(session, "adjustment", "before-0011-back", wallet, added, Money(50))
        session.commit()
    migrate_test_database(db, database_url, "settlement", command.upgrade, "head")
    with Session(db) as session:
        ledger.transfer(session, "adjustment", "after-0011", added, wallet, Money(25))
        session.commit()
        assert [p["amount"] for p in overview.export(session, 7)["postings"]] == [300, 200, 100, -50, 25]
        assert ledger.balance(session, "wallet", 7) == Money(575)
        assert ledger.check(session)["ok"], ledger.check(session)["failures"]
    # and back: the downgrade restores the key by id and the index by account
    migrate_test_database(db, database_url, "settlement", command.downgrade, "0010")
    with Session(db) as session:
        assert [p["amount"] for p in overview.export(session, 7)["postings"]] == [300, 200, 100, -50, 25]
