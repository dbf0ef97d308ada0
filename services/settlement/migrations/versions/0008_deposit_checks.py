"""deposits whose provider reported another amount; adjustments' keys scoped per user

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    # mismatched: the provider approved the deposit but reported another amount than ours; nothing
    # was credited, and the deposit check lists it for an operator
    op.drop_constraint("deposit_state", "deposits", schema="settlement")
    op.create_check_constraint("deposit_state", "deposits", "state IN ('pending', 'completed', 'mismatched')", schema="settlement")
    op.drop_constraint("completed_deposit_posted", "deposits", schema="settlement")
    op.create_check_constraint("completed_deposit_posted", "deposits", "state <> 'completed' OR transaction_id IS NOT NULL", schema="settlement")
    op.add_column("deposits", sa.Column("provider_amount", sa.BigInteger(), nullable=True), schema="settlement")
    # an adjustment's idempotency key names it among its user's adjustments, not among everyone's;
    # the keys of earlier adjustments (global then) keep naming them
    op.add_column("adjustments", sa.Column("owner_id", sa.BigInteger(), nullable=True), schema="settlement")
    op.add_column("adjustments", sa.Column("idempotency_key", sa.String(200), nullable=True), schema="settlement")
    op.execute(
        "UPDATE settlement.adjustments a SET owner_id = la.owner_id, idempotency_key = substr(t.idempotency_key, length('adjustment:') + 1) "
        "FROM settlement.ledger_accounts la, settlement.transactions t WHERE la.id = a.account_id AND t.id = a.transaction_id"
    )
    op.alter_column("adjustments", "owner_id", nullable=False, schema="settlement")
    op.alter_column("adjustments", "idempotency_key", nullable=False, schema="settlement")
    op.create_unique_constraint("adjustment_key_per_user", "adjustments", ["owner_id", "idempotency_key"], schema="settlement")


def downgrade():
    op.drop_constraint("adjustment_key_per_user", "adjustments", schema="settlement")
    op.drop_column("adjustments", "idempotency_key", schema="settlement")
    op.drop_column("adjustments", "owner_id", schema="settlement")
    op.drop_column("deposits", "provider_amount", schema="settlement")
    op.execute("DELETE FROM settlement.deposits WHERE state = 'mismatched'")
    op.drop_constraint("completed_deposit_posted", "deposits", schema="settlement")
    op.create_check_constraint("completed_deposit_posted", "deposits", "state = 'pending' OR transaction_id IS NOT NULL", schema="settlement")
    op.drop_constraint("deposit_state", "deposits", schema="settlement")
    op.create_check_constraint("deposit_state", "deposits", "state IN ('pending', 'completed')", schema="settlement")
