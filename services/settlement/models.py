"""Tables of the settlement service (schema ``settlement``): the ledger and the money flows on it.

The ledger's own guarantees (balanced transactions, append-only postings, balances that follow
the postings, no negative wallet or revenue) are enforced by the database; see the migration
``0002_ledger``.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.money import CURRENCY
from services.common.outbox import outbox_table

SCHEMA = "settlement"

ACCOUNT_KINDS = (
    "wallet",  # a reader's money, owner = user id
    "revenue",  # a creator's earnings, owner = user id
    "escrow",  # shares for an unclaimed thing, owner = thing id
    "fees",  # the platform's fee income (one account)
    "charity",  # budgets of readers without clicks, under the charity policy (one account)
    "clearing",  # the payment provider: money that came in or went out through it (one account)
    "payouts_in_flight",  # payouts requested and not yet confirmed by the provider (one account)
    "adjustments",  # operators' audited corrections (one account)
)
NEVER_NEGATIVE = ("wallet", "revenue")


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox = outbox_table(Base.metadata)


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    owner_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str] = mapped_column(String(3), server_default=CURRENCY)
    balance: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in ACCOUNT_KINDS)})", name="account_kind"),
        CheckConstraint("kind NOT IN ('wallet', 'revenue') OR balance >= 0", name="no_negative_wallet_or_revenue"),
        Index("ledger_accounts_kind_owner_key", "kind", "owner_id", unique=True, postgresql_nulls_not_distinct=True),
    )


class Transaction(Base):
    __tablename__ = "transactions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    # a retried operation posts nothing new: the key names the operation, not the attempt
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    details: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Posting(Base):
    __tablename__ = "postings"
    # keyed by account, then id (migration 0011): postings are read by account, in id order, and a
    # settlement pays one index entry per posting. References are checked set-wise by the ledger
    # trigger (migration 0004), not per row; no index by transaction: no query needs one (0010)
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (CheckConstraint("amount <> 0", name="posting_not_zero"),)


class Deposit(Base):
    __tablename__ = "deposits"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    provider_ref: Mapped[str] = mapped_column(String(100))
    # pending: written before the provider is asked, so a charge is never forgotten if we crash
    # between the provider's yes and our ledger; completed: in the ledger; mismatched: the
    # provider approved it with another amount (``provider_amount``), nothing was credited
    state: Mapped[str] = mapped_column(String(10), server_default="completed")
    provider_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="deposit_key_per_user"),
        CheckConstraint("amount > 0", name="deposit_positive"),
        CheckConstraint("state IN ('pending', 'completed', 'mismatched')", name="deposit_state"),
        CheckConstraint("state <> 'completed' OR transaction_id IS NOT NULL", name="completed_deposit_posted"),
    )


class Payout(Base):
    __tablename__ = "payouts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), server_default="requested")
    reason: Mapped[str] = mapped_column(Text, server_default="")
    provider_ref: Mapped[str] = mapped_column(String(100), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="payout_key_per_user"),
        CheckConstraint("amount > 0", name="payout_positive"),
        CheckConstraint("state IN ('requested', 'completed', 'failed')", name="payout_state"),
    )


class Adjustment(Base):
    """The audit record of an operator's correction: who, why, and the transaction it posted."""

    __tablename__ = "adjustments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    # the user whose wallet or revenue it moved, and the key naming it among their adjustments
    owner_id: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        CheckConstraint("length(reason) > 0", name="adjustment_has_reason"),
        UniqueConstraint("owner_id", "idempotency_key", name="adjustment_key_per_user"),
    )


class Budget(Base):
    """Replica of readers' budgets, fed by ``budget.changed`` from accounts."""

    __tablename__ = "budgets"
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # the newest change applied; an older event arriving late is ignored
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Means(Base):
    """The last ``means.changed`` state published per reader, so only changes are published."""

    __tablename__ = "means"
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    has_means: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProcessedEvent(Base):
    """Events already handled: at-least-once delivery becomes effectively-once."""

    __tablename__ = "processed_events"
    event_id: Mapped[str] = mapped_column(UUID(as_uuid=False), primary_key=True)
    handler: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SandboxPayment(Base):
    """The sandbox payment provider's own records. A real provider keeps these on its side; the
    sandbox keeps them here so that it dedupes by reference as a real provider does."""

    __tablename__ = "sandbox_payments"
    reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))  # "charge" or "payout"
    amount: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
