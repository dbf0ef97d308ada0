"""closed accounts: whose wallet and revenue are paid out once the period they left in is settled

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "closed_accounts",
        sa.Column("user_id", sa.BigInteger(), primary_key=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payout_id", sa.BigInteger(), nullable=True),
        schema="settlement",
    )


def downgrade():
    op.drop_table("closed_accounts", schema="settlement")
