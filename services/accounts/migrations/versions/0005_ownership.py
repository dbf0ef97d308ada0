"""ownership: verified owners, verified hosts and the verification queue

Things owned before this revision were owned on the owner's word (registered or auto-submitted):
they start unverified, like any thing registered now on a host its owner has not verified. The
owners keep them, and verify them by a claim of the page or of the host.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('things', sa.Column('owner_verified', sa.Boolean(), server_default='false', nullable=False), schema='accounts')
    op.add_column('things', sa.Column('host', sa.Text(), nullable=True), schema='accounts')
    op.create_index(op.f('ix_accounts_things_host'), 'things', ['host'], unique=False, schema='accounts')
    op.create_check_constraint('verified_needs_owner', 'things', 'owner_id IS NOT NULL OR NOT owner_verified', schema='accounts')
    _fill_hosts()

    op.create_table('verified_hosts',
    sa.Column('host', sa.Text(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['accounts.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host'),
    schema='accounts'
    )
    op.create_index(op.f('ix_accounts_verified_hosts_user_id'), 'verified_hosts', ['user_id'], unique=False, schema='accounts')

    op.create_table('verifications',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('thing_id', sa.BigInteger(), nullable=True),
    sa.Column('state', sa.String(length=8), server_default='pending', nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('page', 'host')", name='verification_kind'),
    sa.CheckConstraint("state IN ('pending', 'running', 'passed', 'failed')", name='verification_state'),
    sa.ForeignKeyConstraint(['user_id'], ['accounts.users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    schema='accounts'
    )
    op.create_index('verifications_one_open_per_user', 'verifications', ['user_id'], unique=True, schema='accounts', postgresql_where=sa.text("state IN ('pending', 'running')"))
    op.create_index('verifications_open', 'verifications', ['id'], unique=False, schema='accounts', postgresql_where=sa.text("state IN ('pending', 'running')"))
    op.create_index('verifications_by_user', 'verifications', ['user_id', 'created_at'], unique=False, schema='accounts')
    op.create_index('verifications_by_target', 'verifications', ['user_id', 'kind', 'target', 'finished_at'], unique=False, schema='accounts')


def _fill_hosts():
    """Every existing thing's host key, in batches (the rule is the service's own)."""
    from services.accounts.sites import host_of_url

    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.text("SELECT id, url FROM accounts.things WHERE id > :last ORDER BY id LIMIT 5000"), {"last": last}
        ).all()
        if not rows:
            return
        conn.execute(
            sa.text("UPDATE accounts.things t SET host = v.host FROM unnest(CAST(:ids AS bigint[]), CAST(:hosts AS text[])) AS v(id, host) WHERE t.id = v.id"),
            {"ids": [r.id for r in rows], "hosts": [host_of_url(r.url) for r in rows]},
        )
        last = rows[-1].id


def downgrade():
    op.drop_index('verifications_by_target', table_name='verifications', schema='accounts')
    op.drop_index('verifications_by_user', table_name='verifications', schema='accounts')
    op.drop_index('verifications_open', table_name='verifications', schema='accounts', postgresql_where=sa.text("state IN ('pending', 'running')"))
    op.drop_index('verifications_one_open_per_user', table_name='verifications', schema='accounts', postgresql_where=sa.text("state IN ('pending', 'running')"))
    op.drop_table('verifications', schema='accounts')
    op.drop_index(op.f('ix_accounts_verified_hosts_user_id'), table_name='verified_hosts', schema='accounts')
    op.drop_table('verified_hosts', schema='accounts')
    op.drop_constraint('verified_needs_owner', 'things', schema='accounts')
    op.drop_index(op.f('ix_accounts_things_host'), table_name='things', schema='accounts')
    op.drop_column('things', 'host', schema='accounts')
    op.drop_column('things', 'owner_verified', schema='accounts')
