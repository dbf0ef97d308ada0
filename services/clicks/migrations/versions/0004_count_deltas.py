"""count deltas: clicks counted by the workers, waiting to be announced as things.counted

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    # append-only, no index: a worker's transaction only inserts here, so it never waits on a
    # row lock of another; the announcer takes the rows out in bulk (services.clicks.counts)
    op.create_table(
        "count_deltas",
        sa.Column("thing_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("flattrs", sa.Integer(), nullable=False),
        schema="clicks",
    )


def downgrade():
    op.drop_table("count_deltas", schema="clicks")
