"""nobody earns from their own clicks: verified owners, own shares back to the wallet

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # whether the owner proved the ownership; every owner so far counts as verified, as before
    op.add_column("things", sa.Column("verified", sa.Boolean(), server_default="false", nullable=False), schema="settlement")
    op.execute("UPDATE settlement.things SET verified = owner_id IS NOT NULL")
    # the part of a released credit that went back to its new owner's wallet (their own clicks)
    op.add_column("credits", sa.Column("to_wallet", sa.BigInteger(), server_default="0", nullable=False), schema="settlement")
    op.create_check_constraint("credit_to_wallet", "credits", "to_wallet >= 0 AND to_wallet <= amount", schema="settlement")
    # A reader's share of a thing they own, returned to their wallet: by the settlement (they
    # owned it then) or by the escrow release (they claimed it later). One row per own click.
    op.create_table(
        "own_shares",
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("thing_id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), primary_key=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),  # none when nothing moved (0 cents)
        sa.Column("returned_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount >= 0", name="own_share_amount"),
        schema="settlement",
    )
    op.create_index("own_shares_by_reader", "own_shares", ["user_id", "period"], schema="settlement")


def downgrade():
    op.drop_index("own_shares_by_reader", table_name="own_shares", schema="settlement")
    op.drop_table("own_shares", schema="settlement")
    op.drop_constraint("credit_to_wallet", "credits", schema="settlement")
    op.drop_column("credits", "to_wallet", schema="settlement")
    op.drop_column("things", "verified", schema="settlement")
