"""ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 01:09:15.201340
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


# The ledger's rules, enforced by the database for every writer, set-wise: the checks run once per
# INSERT statement over its transition table (a million postings cost one aggregate), never a
# query per row.
LEDGER_RULES = """
CREATE FUNCTION settlement.apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
BEGIN
    -- every transaction's postings arrive in one statement and sum to zero
    SELECT transaction_id INTO unbalanced FROM new_postings
        GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: transaction % does not balance', unbalanced USING ERRCODE = 'check_violation';
    END IF;
    -- balances follow the postings; the accounts' CHECK refuses a negative wallet or revenue
    UPDATE settlement.ledger_accounts a SET balance = a.balance + d.delta
        FROM (SELECT account_id, sum(amount) AS delta FROM new_postings GROUP BY account_id) d
        WHERE a.id = d.account_id;
    RETURN NULL;
END $$;

CREATE TRIGGER postings_apply AFTER INSERT ON settlement.postings
    REFERENCING NEW TABLE AS new_postings FOR EACH STATEMENT EXECUTE FUNCTION settlement.apply_postings();

CREATE FUNCTION settlement.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only; post a correcting transaction instead', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON settlement.postings
    FOR EACH STATEMENT EXECUTE FUNCTION settlement.refuse_change();
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON settlement.transactions
    FOR EACH STATEMENT EXECUTE FUNCTION settlement.refuse_change();

-- a balance changes only through postings (the trigger above runs at depth 1)
CREATE FUNCTION settlement.refuse_balance_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: balances change only by posting transactions' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER ledger_balance_guard BEFORE UPDATE OF balance ON settlement.ledger_accounts
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION settlement.refuse_balance_write();
"""

DROP_LEDGER_RULES = """
DROP TRIGGER IF EXISTS ledger_balance_guard ON settlement.ledger_accounts;
DROP TRIGGER IF EXISTS transactions_append_only ON settlement.transactions;
DROP TRIGGER IF EXISTS postings_append_only ON settlement.postings;
DROP TRIGGER IF EXISTS postings_apply ON settlement.postings;
DROP FUNCTION IF EXISTS settlement.refuse_balance_write();
DROP FUNCTION IF EXISTS settlement.refuse_change();
DROP FUNCTION IF EXISTS settlement.apply_postings();
"""


def upgrade():
    op.create_table('budgets',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id'),
    schema='settlement'
    )
    op.create_table('ledger_accounts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('owner_id', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), server_default='EUR', nullable=False),
    sa.Column('balance', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('wallet', 'revenue', 'escrow', 'fees', 'charity', 'clearing', 'payouts_in_flight', 'adjustments')", name='account_kind'),
    sa.CheckConstraint("kind NOT IN ('wallet', 'revenue') OR balance >= 0", name='no_negative_wallet_or_revenue'),
    sa.PrimaryKeyConstraint('id'),
    schema='settlement'
    )
    op.create_index('ledger_accounts_kind_owner_key', 'ledger_accounts', ['kind', 'owner_id'], unique=True, schema='settlement', postgresql_nulls_not_distinct=True)
    op.create_table('means',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('has_means', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('user_id'),
    schema='settlement'
    )
    op.create_table('payouts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='requested', nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.Column('provider_ref', sa.String(length=100), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("state IN ('requested', 'completed', 'failed')", name='payout_state'),
    sa.CheckConstraint('amount > 0', name='payout_positive'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='payout_key_per_user'),
    schema='settlement'
    )
    op.create_index(op.f('ix_settlement_payouts_user_id'), 'payouts', ['user_id'], unique=False, schema='settlement')
    op.create_table('processed_events',
    sa.Column('event_id', sa.UUID(as_uuid=False), nullable=False),
    sa.Column('handler', sa.String(length=64), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', 'handler'),
    schema='settlement'
    )
    op.create_table('sandbox_payments',
    sa.Column('reference', sa.String(length=100), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('reference'),
    schema='settlement'
    )
    op.create_table('transactions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    schema='settlement'
    )
    op.create_table('adjustments',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('length(reason) > 0', name='adjustment_has_reason'),
    sa.ForeignKeyConstraint(['account_id'], ['settlement.ledger_accounts.id'], ),
    sa.ForeignKeyConstraint(['transaction_id'], ['settlement.transactions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('transaction_id'),
    schema='settlement'
    )
    op.create_table('deposits',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('provider_ref', sa.String(length=100), nullable=False),
    sa.Column('transaction_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('amount > 0', name='deposit_positive'),
    sa.ForeignKeyConstraint(['transaction_id'], ['settlement.transactions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='deposit_key_per_user'),
    schema='settlement'
    )
    op.create_table('postings',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount <> 0', name='posting_not_zero'),
    sa.ForeignKeyConstraint(['account_id'], ['settlement.ledger_accounts.id'], ),
    sa.ForeignKeyConstraint(['transaction_id'], ['settlement.transactions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    schema='settlement'
    )
    op.create_index(op.f('ix_settlement_postings_account_id'), 'postings', ['account_id'], unique=False, schema='settlement')
    op.create_index(op.f('ix_settlement_postings_transaction_id'), 'postings', ['transaction_id'], unique=False, schema='settlement')
    op.execute(LEDGER_RULES)


def downgrade():
    op.execute(DROP_LEDGER_RULES)
    op.drop_index(op.f('ix_settlement_postings_transaction_id'), table_name='postings', schema='settlement')
    op.drop_index(op.f('ix_settlement_postings_account_id'), table_name='postings', schema='settlement')
    op.drop_table('postings', schema='settlement')
    op.drop_table('deposits', schema='settlement')
    op.drop_table('adjustments', schema='settlement')
    op.drop_table('transactions', schema='settlement')
    op.drop_table('sandbox_payments', schema='settlement')
    op.drop_table('processed_events', schema='settlement')
    op.drop_index(op.f('ix_settlement_payouts_user_id'), table_name='payouts', schema='settlement')
    op.drop_table('payouts', schema='settlement')
    op.drop_table('means', schema='settlement')
    op.drop_index('ledger_accounts_kind_owner_key', table_name='ledger_accounts', schema='settlement', postgresql_nulls_not_distinct=True)
    op.drop_table('ledger_accounts', schema='settlement')
    op.drop_table('budgets', schema='settlement')
