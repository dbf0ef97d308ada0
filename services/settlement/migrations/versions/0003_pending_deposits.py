"""deposits are written as pending before the provider is asked

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("deposits", sa.Column("state", sa.String(length=10), server_default="completed", nullable=False), schema="settlement")
    op.alter_column("deposits", "transaction_id", nullable=True, schema="settlement")
    op.create_check_constraint("deposit_state", "deposits", "state IN ('pending', 'completed')", schema="settlement")
    op.create_check_constraint(
        "completed_deposit_posted", "deposits", "state = 'pending' OR transaction_id IS NOT NULL", schema="settlement"
    )


def downgrade():
    op.drop_constraint("completed_deposit_posted", "deposits", schema="settlement")
    op.drop_constraint("deposit_state", "deposits", schema="settlement")
    op.execute("DELETE FROM settlement.deposits WHERE state = 'pending'")
    op.alter_column("deposits", "transaction_id", nullable=False, schema="settlement")
    op.drop_column("deposits", "state", schema="settlement")
