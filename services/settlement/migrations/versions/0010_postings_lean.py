"""postings lean for a settlement: no index by transaction, the trigger's checks in fewer passes

Revision ID: 0010
Revises: 0009
"""
import importlib.util
import pathlib

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# A settlement writes a hundred thousand postings of one transaction; each index on postings costs
# an entry (and its WAL) per posting. The index by transaction_id served no query: the ledger check
# groups every posting (a full scan whatever the indexes), statements read postings by account,
# and one transaction's postings are found by the account index or a scan, as an operator's
# occasional question. Dropping it took about a tenth off the settlement's postings INSERT
# (bench-settlement). The same rules as migration 0009's apply_postings; the two per-transaction
# checks (each sums to zero, each exists) read the postings once instead of twice.
ONE_PASS_CHECKS = """
CREATE OR REPLACE FUNCTION settlement.apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wrong record;
    touched bigint;
    named bigint;
    posted bigint;
    nestloop text;
BEGIN
    -- every transaction's postings arrive in one statement, sum to zero, and name a transaction
    -- (an unbalanced transaction is reported first, as before: 0009 checked the sums first)
    SELECT p.transaction_id, p.total INTO wrong
        FROM (SELECT transaction_id, sum(amount) AS total FROM new_postings GROUP BY transaction_id) p
        LEFT JOIN settlement.transactions t ON t.id = p.transaction_id
        WHERE p.total <> 0 OR t.id IS NULL
        ORDER BY p.total = 0 LIMIT 1;
    IF FOUND THEN
        IF wrong.total <> 0 THEN
            RAISE EXCEPTION 'ledger: transaction % does not balance', wrong.transaction_id USING ERRCODE = 'check_violation';
        END IF;
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


def _migration_0009():
    """Migration 0009's module, whose ``apply_postings`` the downgrade restores (one definition of
    it, not a copy); loaded from its file, as a revision's name is not a Python identifier."""
    path = pathlib.Path(__file__).with_name("0009_ledger_in_bulk.py")
    spec = importlib.util.spec_from_file_location("settlement_migration_0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade():
    op.execute(ONE_PASS_CHECKS)
    op.drop_index("ix_settlement_postings_transaction_id", table_name="postings", schema="settlement")


def downgrade():
    op.create_index("ix_settlement_postings_transaction_id", "postings", ["transaction_id"], unique=False, schema="settlement")
    op.execute(_migration_0009().BULK_BALANCES)
