"""flattr counts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:20:47.908596
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('processed_events',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('handler', sa.String(length=64), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', 'handler'),
    schema='accounts'
    )
    op.create_table('thing_daily_counts',
    sa.Column('thing_id', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('flattrs', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('thing_id', 'day', 'period'),
    schema='accounts'
    )
    op.add_column('things', sa.Column('flattrs', sa.BigInteger(), server_default='0', nullable=False), schema='accounts')
    op.create_index('things_by_flattrs', 'things', ['flattrs'], unique=False, schema='accounts')


def downgrade():
    op.drop_index('things_by_flattrs', table_name='things', schema='accounts')
    op.drop_column('things', 'flattrs', schema='accounts')
    op.drop_table('thing_daily_counts', schema='accounts')
    op.drop_table('processed_events', schema='accounts')
