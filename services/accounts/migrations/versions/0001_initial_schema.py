"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 00:49:10.157348
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
    schema='accounts'
    )
    op.create_index('outbox_unsent', 'outbox', ['id'], unique=False, schema='accounts', postgresql_where=sa.text('sent_at IS NULL'))
    op.create_table('users',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('username', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('firstname', sa.String(length=100), server_default='', nullable=False),
    sa.Column('lastname', sa.String(length=100), server_default='', nullable=False),
    sa.Column('avatar', sa.String(length=2000), server_default='', nullable=False),
    sa.Column('about', sa.String(length=1000), server_default='', nullable=False),
    sa.Column('city', sa.String(length=100), server_default='', nullable=False),
    sa.Column('country', sa.String(length=100), server_default='', nullable=False),
    sa.Column('budget_cents', sa.BigInteger(), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('budget_cents IS NULL OR budget_cents >= 200', name='budget_minimum'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username'),
    schema='accounts'
    )
    op.create_index('users_email_lower_key', 'users', [sa.literal_column('lower(email)')], unique=True, schema='accounts')
    op.create_table('oauth_clients',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('owner_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['accounts.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id'),
    schema='accounts'
    )
    op.create_table('things',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('owner_id', sa.BigInteger(), nullable=True),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=1000), server_default='', nullable=False),
    sa.Column('category', sa.String(length=16), server_default='rest', nullable=False),
    sa.Column('language', sa.String(length=8), server_default='en_GB', nullable=False),
    sa.Column('tags', sa.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('hidden', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('image', sa.String(length=2000), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['accounts.users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    schema='accounts'
    )
    op.create_index(op.f('ix_accounts_things_owner_id'), 'things', ['owner_id'], unique=False, schema='accounts')
    op.create_index('things_tags_gin', 'things', ['tags'], unique=False, schema='accounts', postgresql_using='gin')
    op.create_index('things_url_live_key', 'things', ['url'], unique=True, schema='accounts', postgresql_where=sa.text('deleted_at IS NULL'))
    op.create_table('access_tokens',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=True),
    sa.Column('scopes', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=100), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('personal', 'oauth')", name='token_kind'),
    sa.ForeignKeyConstraint(['client_id'], ['accounts.oauth_clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['accounts.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash'),
    schema='accounts'
    )
    op.create_index(op.f('ix_accounts_access_tokens_user_id'), 'access_tokens', ['user_id'], unique=False, schema='accounts')
    op.create_table('authorization_codes',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scopes', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['accounts.oauth_clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['accounts.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash'),
    schema='accounts'
    )


def downgrade():
    op.drop_table('authorization_codes', schema='accounts')
    op.drop_index(op.f('ix_accounts_access_tokens_user_id'), table_name='access_tokens', schema='accounts')
    op.drop_table('access_tokens', schema='accounts')
    op.drop_index('things_url_live_key', table_name='things', schema='accounts', postgresql_where=sa.text('deleted_at IS NULL'))
    op.drop_index('things_tags_gin', table_name='things', schema='accounts', postgresql_using='gin')
    op.drop_index(op.f('ix_accounts_things_owner_id'), table_name='things', schema='accounts')
    op.drop_table('things', schema='accounts')
    op.drop_table('oauth_clients', schema='accounts')
    op.drop_index('users_email_lower_key', table_name='users', schema='accounts')
    op.drop_table('users', schema='accounts')
    op.drop_index('outbox_unsent', table_name='outbox', schema='accounts')
    op.drop_table('outbox', schema='accounts')
