"""one click per request: a redelivered request is recognised in whatever period

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("clicks_one_per_request", "clicks", ["request_id"], unique=True, schema="clicks")


def downgrade():
    op.drop_index("clicks_one_per_request", table_name="clicks", schema="clicks")
