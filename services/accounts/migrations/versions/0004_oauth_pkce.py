"""oauth: clients without a secret, PKCE challenges, used codes remembered (a replay revokes
the token the code issued)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column('oauth_clients', 'secret_hash', existing_type=sa.String(length=64), nullable=True, schema='accounts')
    op.add_column('authorization_codes', sa.Column('code_challenge', sa.String(length=128), nullable=True), schema='accounts')
    op.add_column('authorization_codes', sa.Column('used_at', sa.DateTime(timezone=True), nullable=True), schema='accounts')
    op.add_column('authorization_codes', sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True), schema='accounts')
    op.add_column('authorization_codes', sa.Column('token_hash', sa.String(length=64), nullable=True), schema='accounts')
    op.create_index('authorization_codes_by_expiry', 'authorization_codes', ['expires_at'], unique=False, schema='accounts')


def downgrade():
    op.drop_index('authorization_codes_by_expiry', table_name='authorization_codes', schema='accounts')
    op.drop_column('authorization_codes', 'token_hash', schema='accounts')
    op.drop_column('authorization_codes', 'replayed_at', schema='accounts')
    op.drop_column('authorization_codes', 'used_at', schema='accounts')
    op.drop_column('authorization_codes', 'code_challenge', schema='accounts')
    op.execute("DELETE FROM accounts.oauth_clients WHERE secret_hash IS NULL")
    op.alter_column('oauth_clients', 'secret_hash', existing_type=sa.String(length=64), nullable=False, schema='accounts')
