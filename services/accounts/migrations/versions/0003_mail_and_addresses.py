"""mail and addresses: confirmed email addresses, privacy choices, one-time email links, the mail queue

Revision ID: 0003
Revises: 0002

An address is unique among confirmed addresses only: signing up with an address another account
uses answers like any sign-up (the address's owner is told by mail), so sign-up does not reveal
which addresses are registered. Addresses registered before this revision count as unconfirmed.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True), schema="accounts")
    op.add_column("users", sa.Column("hide_flattrs", sa.Boolean(), server_default="false", nullable=False), schema="accounts")
    op.add_column("users", sa.Column("hide_earnings", sa.Boolean(), server_default="true", nullable=False), schema="accounts")
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True), schema="accounts")
    op.drop_index("users_email_lower_key", table_name="users", schema="accounts")
    op.create_index("users_email_lower", "users", [sa.text("lower(email)")], schema="accounts")
    op.create_index(
        "users_confirmed_email_key", "users", [sa.text("lower(email)")], unique=True, schema="accounts",
        postgresql_where=sa.text("email_verified_at IS NOT NULL"),
    )
    op.create_table(
        "email_links",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("accounts.users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("purpose IN ('confirm', 'reset')", name="email_link_purpose"),
        schema="accounts",
    )
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        # what the mail is about, e.g. "period-settled:2026-11:42": the same notice is queued once
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("to_address", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        schema="accounts",
    )
    op.create_index(
        "mail_queue_due", "mail_queue", ["next_attempt_at"], schema="accounts",
        postgresql_where=sa.text("sent_at IS NULL AND failed_at IS NULL"),
    )


def downgrade():
    op.drop_index("mail_queue_due", table_name="mail_queue", schema="accounts")
    op.drop_table("mail_queue", schema="accounts")
    op.drop_table("email_links", schema="accounts")
    op.drop_index("users_confirmed_email_key", table_name="users", schema="accounts")
    op.drop_index("users_email_lower", table_name="users", schema="accounts")
    op.create_index("users_email_lower_key", "users", [sa.text("lower(email)")], unique=True, schema="accounts")
    for column in ("deleted_at", "hide_earnings", "hide_flattrs", "email_verified_at"):
        op.drop_column("users", column, schema="accounts")
