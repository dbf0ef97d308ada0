"""period settlement: settlements, imported clicks, charges, credits, escrow, replicas

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The split and the fee as SQL, next to their Python twins in services/settlement/rules.py (a
# property test checks that both agree). Plain SQL functions the planner inlines into the batch.
SPLIT_FUNCTIONS = """
CREATE FUNCTION settlement.platform_fee(amount bigint, fee_bps integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT amount * fee_bps / 10000 $$;

CREATE FUNCTION settlement.split_share(to_split bigint, clicks bigint, rank bigint, reader bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT to_split / clicks + CASE WHEN (rank + reader) % clicks < to_split % clicks THEN 1 ELSE 0 END $$;
"""


# A settlement posts a hundred thousand postings in one statement. Per-row foreign keys would run
# a lookup per posting (PostgreSQL's referential triggers are per-row queries), so postings are
# checked set-wise instead, once per statement, by the same trigger that checks the balance: every
# transaction exists, and every account exists (the balance update must touch each one). Accounts
# can no longer be deleted, as transactions never could; ledger rows leave room for updates in
# place (fillfactor), since a settlement moves the balance of every charged wallet.
SET_WISE_REFERENCES = """
CREATE OR REPLACE FUNCTION settlement.apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
    touched bigint;
    named bigint;
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
    -- balances follow the postings; the accounts' CHECK refuses a negative wallet or revenue
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

CREATE TRIGGER ledger_accounts_kept BEFORE DELETE OR TRUNCATE ON settlement.ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION settlement.refuse_change();
ALTER TABLE settlement.postings DROP CONSTRAINT postings_transaction_id_fkey;
ALTER TABLE settlement.postings DROP CONSTRAINT postings_account_id_fkey;
ALTER TABLE settlement.ledger_accounts SET (fillfactor = 80);
"""

PER_ROW_REFERENCES = """
ALTER TABLE settlement.ledger_accounts RESET (fillfactor);
ALTER TABLE settlement.postings ADD CONSTRAINT postings_account_id_fkey FOREIGN KEY (account_id) REFERENCES settlement.ledger_accounts(id);
ALTER TABLE settlement.postings ADD CONSTRAINT postings_transaction_id_fkey FOREIGN KEY (transaction_id) REFERENCES settlement.transactions(id);
DROP TRIGGER IF EXISTS ledger_accounts_kept ON settlement.ledger_accounts;
"""


def upgrade():
    op.create_table(
        "settlements",
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("state", sa.String(10), server_default="pending", nullable=False),
        sa.Column("step", sa.String(10), server_default="pending", nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("policy", sa.String(10), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected_clicks", sa.BigInteger(), nullable=False),
        sa.Column("imported_clicks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cursor_user", sa.BigInteger(), nullable=True),  # the last reader whose clicks are in
        sa.Column("totals", sa.dialects.postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), sa.ForeignKey("settlement.transactions.id"), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'settling', 'settled', 'failed')", name="settlement_state"),
        sa.CheckConstraint("step IN ('pending', 'importing', 'imported', 'posted')", name="settlement_step"),
        sa.CheckConstraint("policy IN ('rollover', 'charity')", name="settlement_policy"),
        sa.CheckConstraint("fee_bps BETWEEN 0 AND 10000", name="settlement_fee"),
        sa.CheckConstraint("(state = 'settled') = (step = 'posted')", name="settled_means_posted"),
        schema="settlement",
    )
    # one partition per period, made by the batch; a settled period's partition gets its index then
    op.execute(
        "CREATE TABLE settlement.period_clicks (period varchar(16) NOT NULL, user_id bigint NOT NULL, thing_id bigint NOT NULL, "
        # the click's position among its reader's clicks by thing id (from 0), and their number
        "rank integer NOT NULL, clicks integer NOT NULL, CHECK (rank >= 0 AND rank < clicks)) PARTITION BY LIST (period)"
    )
    op.create_table(
        "charges",
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('split', 'charity')", name="charge_kind"),
        sa.CheckConstraint("amount >= 0 AND fee >= 0 AND fee <= amount", name="charge_amounts"),
        schema="settlement",
    )
    op.create_table(
        "credits",
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("thing_id", sa.BigInteger(), primary_key=True),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        # the transaction that moved it last (no per-row foreign key: a settlement writes thousands)
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("state IN ('paid', 'held', 'released', 'refunded')", name="credit_state"),
        sa.CheckConstraint("amount >= 0", name="credit_amount"),
        sa.CheckConstraint("state IN ('held', 'refunded') OR owner_id IS NOT NULL", name="credit_paid_to_owner"),
        schema="settlement",
    )
    op.create_index("credits_by_owner", "credits", ["owner_id", "period"], schema="settlement")
    op.create_index("credits_held", "credits", ["thing_id"], schema="settlement", postgresql_where=sa.text("state = 'held'"))
    op.create_table(
        "things",
        sa.Column("thing_id", sa.BigInteger(), primary_key=True),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        schema="settlement",
    )
    op.create_table(
        "budget_changes",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        schema="settlement",
    )
    op.create_index("budget_changes_by_user", "budget_changes", ["user_id", "changed_at"], schema="settlement")
    op.execute("INSERT INTO settlement.budget_changes (user_id, amount, changed_at) SELECT user_id, amount, changed_at FROM settlement.budgets")
    op.execute(SPLIT_FUNCTIONS)
    op.execute(SET_WISE_REFERENCES)


def downgrade():
    op.execute(PER_ROW_REFERENCES)  # the previous apply_postings stays correct with foreign keys back
    op.execute("DROP FUNCTION IF EXISTS settlement.split_share(bigint, bigint, bigint, bigint)")
    op.execute("DROP FUNCTION IF EXISTS settlement.platform_fee(bigint, integer)")
    op.drop_table("budget_changes", schema="settlement")
    op.drop_table("things", schema="settlement")
    op.drop_table("credits", schema="settlement")
    op.drop_table("charges", schema="settlement")
    op.execute("DROP TABLE settlement.period_clicks")
    op.drop_table("settlements", schema="settlement")
