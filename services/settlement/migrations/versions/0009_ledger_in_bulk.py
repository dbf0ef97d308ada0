"""the ledger in bulk: a settlement's balances by one hash join, the balance guard per statement,
room on each page of accounts for their next balances

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The same rules as migration 0004's apply_postings; only how the balances are updated changes.
# A transition table has no statistics, so the planner guesses 200 accounts for any GROUP BY over
# it and probes the accounts' primary key once per account (a nested loop): right for a deposit's
# two postings, but a settlement names every charged wallet (100,000 probes for a million clicks,
# half of the ledger step's time in bench-settlement). A statement that names many accounts takes
# its own UPDATE, planned without nested loops (one pass over the accounts, joined by hash), and
# when it names each account once, joins the postings themselves (no sums: at five million clicks
# the aggregate's hash table alone held 100 MB). Each UPDATE is a separate statement of the
# function, so each keeps its own cached plan.
BULK_BALANCES = """
CREATE OR REPLACE FUNCTION settlement.apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
    touched bigint;
    named bigint;
    posted bigint;
    nestloop text;
BEGIN
    -- every transaction's postings arrive in one statement and sum to zero
    SELECT transaction_id INTO unbalanced FROM new_postings
        GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: transaction % does not balance', unbalanced USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT transaction_id FROM new_postings) p
               WHERE NOT EXISTS (SELECT 1 FROM settlement.transactions t WHERE t.id = p.transaction_id)) THEN
        RAISE EXCEPTION 'ledger: a posting names a transaction that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT count(*), count(DISTINCT account_id) INTO posted, named FROM new_postings;
    -- balances follow the postings; the accounts' CHECK refuses a negative wallet or revenue
    IF named < 10000 THEN
        UPDATE settlement.ledger_accounts a SET balance = a.balance + d.delta
            FROM (SELECT account_id, sum(amount) AS delta FROM new_postings GROUP BY account_id) d
            WHERE a.id = d.account_id;
        GET DIAGNOSTICS touched = ROW_COUNT;
    ELSE
        nestloop := current_setting('enable_nestloop');
        PERFORM set_config('enable_nestloop', 'off', true);
        IF posted = named THEN
            -- each account named once (a settlement's wallets, unless a reader gets an own share
            -- back): its posting is its delta, nothing to sum
            UPDATE settlement.ledger_accounts a SET balance = a.balance + p.amount
                FROM new_postings p WHERE p.account_id = a.id;
        ELSE
            UPDATE settlement.ledger_accounts a SET balance = a.balance + d.delta
                FROM (SELECT account_id, sum(amount) AS delta FROM new_postings GROUP BY account_id) d
                WHERE d.account_id = a.id;
        END IF;
        GET DIAGNOSTICS touched = ROW_COUNT;
        PERFORM set_config('enable_nestloop', nestloop, true);
    END IF;
    IF touched <> named THEN
        RAISE EXCEPTION 'ledger: a posting names an account that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
"""

# migration 0004's function, for the downgrade
ONE_PLAN = """
CREATE OR REPLACE FUNCTION settlement.apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
    touched bigint;
    named bigint;
BEGIN
    SELECT transaction_id INTO unbalanced FROM new_postings
        GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: transaction % does not balance', unbalanced USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT transaction_id FROM new_postings) p
               WHERE NOT EXISTS (SELECT 1 FROM settlement.transactions t WHERE t.id = p.transaction_id)) THEN
        RAISE EXCEPTION 'ledger: a posting names a transaction that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    UPDATE settlement.ledger_accounts a SET balance = a.balance + d.delta
        FROM (SELECT account_id, sum(amount) AS delta FROM new_postings GROUP BY account_id) d
        WHERE a.id = d.account_id;
    GET DIAGNOSTICS touched = ROW_COUNT;
    SELECT count(DISTINCT account_id) INTO named FROM new_postings;
    IF touched <> named THEN
        RAISE EXCEPTION 'ledger: a posting names an account that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
"""

# The guard that keeps balances moving only through postings, once per statement instead of once
# per row: a row-level BEFORE UPDATE trigger makes PostgreSQL lock each row before the update (to
# hand the trigger a stable row), whatever its WHEN says, so a settlement locked every charged
# wallet twice. The rule is the same: an UPDATE of balance outside the postings' trigger is refused
# (now also one that matches no row).
STATEMENT_GUARD = """
DROP TRIGGER ledger_balance_guard ON settlement.ledger_accounts;
CREATE TRIGGER ledger_balance_guard BEFORE UPDATE OF balance ON settlement.ledger_accounts
    FOR EACH STATEMENT WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION settlement.refuse_balance_write();
"""

ROW_GUARD = """
DROP TRIGGER ledger_balance_guard ON settlement.ledger_accounts;
CREATE TRIGGER ledger_balance_guard BEFORE UPDATE OF balance ON settlement.ledger_accounts
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION settlement.refuse_balance_write();
"""


def upgrade():
    op.execute(BULK_BALANCES)
    op.execute(STATEMENT_GUARD)
    # A settlement moves the balance of every charged wallet in one statement. With half of each
    # page free, every new balance fits on its row's page (a HOT update: no index entries), and the
    # next visit of the page prunes the old one; at 80% most of them moved to other pages, each
    # with two new index entries. Pages written from now on keep that room; `VACUUM FULL
    # settlement.ledger_accounts` repacks the older ones.
    op.execute("ALTER TABLE settlement.ledger_accounts SET (fillfactor = 50)")


def downgrade():
    op.execute("ALTER TABLE settlement.ledger_accounts SET (fillfactor = 80)")
    op.execute(ROW_GUARD)
    op.execute(ONE_PLAN)
