"""click path

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 01:25:16.601447
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('clicks',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('period_id', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('thing_id', sa.BigInteger(), nullable=False),
    sa.Column('request_id', sa.UUID(as_uuid=False), nullable=False),
    sa.Column('source', sa.String(length=12), server_default='api', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='clicks'
    )
    op.create_index('clicks_by_thing', 'clicks', ['thing_id', 'id'], unique=False, schema='clicks')
    op.create_index('clicks_by_user', 'clicks', ['user_id', 'id'], unique=False, schema='clicks')
    op.create_index('clicks_once_per_period', 'clicks', ['period_id', 'user_id', 'thing_id'], unique=True, schema='clicks')
    op.create_table('means',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('has_means', sa.Boolean(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id'),
    schema='clicks'
    )
    op.create_table('periods',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), server_default='open', nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('open', 'sealed')", name='period_state'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('seq'),
    schema='clicks'
    )
    op.create_index('periods_one_open', 'periods', ['state'], unique=True, schema='clicks', postgresql_where=sa.text("state = 'open'"))
    op.create_table('processed_events',
    sa.Column('event_id', sa.UUID(as_uuid=False), nullable=False),
    sa.Column('handler', sa.String(length=64), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', 'handler'),
    schema='clicks'
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('thing_id', sa.BigInteger(), nullable=False),
    sa.Column('periods_left', sa.Integer(), nullable=True),
    sa.Column('paused', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='clicks'
    )
    op.create_index('subscriptions_one_per_thing', 'subscriptions', ['user_id', 'thing_id'], unique=True, schema='clicks')
    op.create_table('thing_counters',
    sa.Column('thing_id', sa.BigInteger(), nullable=False),
    sa.Column('flattrs', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('period_id', sa.String(length=16), nullable=False),
    sa.Column('period_flattrs', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_flattr_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('thing_id'),
    schema='clicks'
    )
    op.create_table('things',
    sa.Column('thing_id', sa.BigInteger(), nullable=False),
    sa.Column('owner_id', sa.BigInteger(), nullable=True),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('title', sa.Text(), server_default='', nullable=False),
    sa.Column('deleted', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('thing_id'),
    schema='clicks'
    )


    # the first period opens with the schema; later ones open when one is sealed
    op.execute(
        "INSERT INTO clicks.periods (id, seq, state, starts_at) "
        "VALUES (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'), 1, 'open', now())"
    )


def downgrade():
    op.drop_table('things', schema='clicks')
    op.drop_table('thing_counters', schema='clicks')
    op.drop_index('subscriptions_one_per_thing', table_name='subscriptions', schema='clicks')
    op.drop_table('subscriptions', schema='clicks')
    op.drop_table('processed_events', schema='clicks')
    op.drop_index('periods_one_open', table_name='periods', schema='clicks', postgresql_where=sa.text("state = 'open'"))
    op.drop_table('periods', schema='clicks')
    op.drop_table('means', schema='clicks')
    op.drop_index('clicks_once_per_period', table_name='clicks', schema='clicks')
    op.drop_index('clicks_by_user', table_name='clicks', schema='clicks')
    op.drop_index('clicks_by_thing', table_name='clicks', schema='clicks')
    op.drop_table('clicks', schema='clicks')
