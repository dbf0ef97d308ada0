"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 00:49:11.645586
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.UUID(as_uuid=False), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id'),
    schema='settlement'
    )
    op.create_index('outbox_unsent', 'outbox', ['id'], unique=False, schema='settlement', postgresql_where=sa.text('sent_at IS NULL'))


def downgrade():
    op.drop_index('outbox_unsent', table_name='outbox', schema='settlement')
    op.drop_table('outbox', schema='settlement')
