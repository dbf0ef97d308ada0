"""Tables of the accounts service (schema ``accounts``)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.outbox import outbox_table

SCHEMA = "accounts"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox = outbox_table(Base.metadata)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(Text)
    firstname: Mapped[str] = mapped_column(String(100), server_default="")
    lastname: Mapped[str] = mapped_column(String(100), server_default="")
    avatar: Mapped[str] = mapped_column(String(2000), server_default="")
    about: Mapped[str] = mapped_column(String(1000), server_default="")
    city: Mapped[str] = mapped_column(String(100), server_default="")
    country: Mapped[str] = mapped_column(String(100), server_default="")
    budget_cents: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # set when the owner of the address followed the link mailed to it
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    hide_flattrs: Mapped[bool] = mapped_column(Boolean, server_default="false")
    hide_earnings: Mapped[bool] = mapped_column(Boolean, server_default="true")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        # emails are compared case-insensitively: Bob@x and bob@x are one address. One account
        # per confirmed address; an unconfirmed one may be named by several (migration 0003)
        Index("users_email_lower", func.lower(text("email"))),
        Index("users_confirmed_email_key", func.lower(text("email")), unique=True, postgresql_where=text("email_verified_at IS NOT NULL")),
        CheckConstraint("budget_cents IS NULL OR budget_cents >= 200", name="budget_minimum"),
    )


class EmailLink(Base):
    """A one-time link mailed to an address: ``confirm`` proves the address is the user's,
    ``reset`` sets a new password. Only the token's SHA-256 is kept."""

    __tablename__ = "email_links"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (CheckConstraint("purpose IN ('confirm', 'reset')", name="email_link_purpose"),)


class QueuedMail(Base):
    """A mail to send (``services.accounts.mail``): written in the transaction that decided it,
    sent by the relay, retried until the SMTP server takes it."""

    __tablename__ = "mail_queue"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("mail_queue_due", "next_attempt_at", postgresql_where=text("sent_at IS NULL AND failed_at IS NULL")),)


class OAuthClient(Base):
    __tablename__ = "oauth_clients"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    # None: a client that cannot keep a secret (a mobile or desktop app), which must use PKCE
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AccessToken(Base):
    __tablename__ = "access_tokens"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # personal tokens are made by the user for themself; oauth tokens belong to a client application
    kind: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=True)
    scopes: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (CheckConstraint("kind IN ('personal', 'oauth')", name="token_kind"),)


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scopes: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)  # PKCE, S256
    # a code is kept once used, until it expires: a replay revokes the token it issued
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (Index("authorization_codes_by_expiry", "expires_at"),)


class ThingDailyCount(Base):
    """Clicks per thing, day and period, from ``things.counted``: what the flattr sorts read."""

    __tablename__ = "thing_daily_counts"
    thing_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    flattrs: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ProcessedEvent(Base):
    __tablename__ = "processed_events"
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    handler: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # null while nobody has claimed the thing (flattred by URL before its creator joined)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    # whether the owner proved the thing is theirs (its page or its host names them); only a
    # verified owner is paid, an unverified one can be taken over by a verified claim
    owner_verified: Mapped[bool] = mapped_column(Boolean, server_default="false")
    url: Mapped[str] = mapped_column(Text)
    # the URL's host key (services.accounts.sites): what a verified host covers
    host: Mapped[str | None] = mapped_column(Text, nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), server_default="")
    category: Mapped[str] = mapped_column(String(16), server_default="rest")
    language: Mapped[str] = mapped_column(String(8), server_default="en_GB")
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    hidden: Mapped[bool] = mapped_column(Boolean, server_default="false")
    image: Mapped[str] = mapped_column(String(2000), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # all-time clicks, kept from things.counted for the flattrs sort
    flattrs: Mapped[int] = mapped_column(BigInteger, server_default="0")
    __table_args__ = (
        Index("things_by_flattrs", "flattrs"),
        # a URL names one live thing; a deleted thing's URL can be registered again
        Index("things_url_live_key", "url", unique=True, postgresql_where=text("deleted_at IS NULL")),
        Index("things_tags_gin", "tags", postgresql_using="gin"),
        CheckConstraint("owner_id IS NOT NULL OR NOT owner_verified", name="verified_needs_owner"),
    )


class VerifiedHost(Base):
    """A host a user proved is theirs; one user per host. Their things on it are verified."""

    __tablename__ = "verified_hosts"
    host: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16))  # "well-known" or "root page"
    verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Verification(Base):
    """A request to check a page (``kind`` "page", for ``thing_id``) or a host (``kind`` "host"),
    and its outcome. The verification pool takes pending ones; see ``services.accounts.verifications``."""

    __tablename__ = "verifications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(Text)  # the page's URL or the host key
    thing_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(8), server_default="pending")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        CheckConstraint("kind IN ('page', 'host')", name="verification_kind"),
        CheckConstraint("state IN ('pending', 'running', 'passed', 'failed')", name="verification_state"),
        # one at a time per user
        Index("verifications_one_open_per_user", "user_id", unique=True, postgresql_where=text("state IN ('pending', 'running')")),
        Index("verifications_open", "id", postgresql_where=text("state IN ('pending', 'running')")),
        Index("verifications_by_user", "user_id", "created_at"),
        Index("verifications_by_target", "user_id", "kind", "target", "finished_at"),
    )


class TwoFactor(Base):
    """A user's TOTP second factor: pending until confirmed with a code (``confirmed_at``). The
    secret is sealed (encrypted) under ``TOTP_ENCRYPTION_KEYS``; see services.accounts.two_factor."""

    __tablename__ = "two_factor"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret_sealed: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the latest 30-second step whose code was accepted: a code works once
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RecoveryCode(Base):
    """A one-time recovery code of a user's second factor, stored as its SHA-256."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
