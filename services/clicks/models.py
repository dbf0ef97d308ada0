"""Tables of the clicks service (schema ``clicks``)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, Index, Integer, MetaData, String, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.outbox import outbox_table

SCHEMA = "clicks"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox = outbox_table(Base.metadata)


class Period(Base):
    """The unit of "once per thing" and of the split. Exactly one period is open."""

    __tablename__ = "periods"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # "2026-11", "2026-11.2"
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    state: Mapped[str] = mapped_column(String(10), server_default="open")
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # a settled period's clicks written to an archive file and its partition dropped
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    archived_clicks: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (
        CheckConstraint("state IN ('open', 'sealed')", name="period_state"),
        Index("periods_one_open", "state", unique=True, postgresql_where=text("state = 'open'")),
    )


class Click(Base):
    """One partition per period (``services.clicks.partitions``): a partitioned table's unique
    indexes hold the partition key, so the key is (id, period)."""

    __tablename__ = "clicks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    period_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    thing_id: Mapped[int] = mapped_column(BigInteger)
    # the request that made the click: a redelivered request is recognised and answered "ok" again
    request_id: Mapped[str] = mapped_column(UUID(as_uuid=False))
    source: Mapped[str] = mapped_column(String(12), server_default="api")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        Index("clicks_once_per_period", "period_id", "user_id", "thing_id", unique=True),
        Index("clicks_by_request", "request_id"),
        Index("clicks_by_thing", "thing_id", "id"),
        Index("clicks_by_user", "user_id", "id"),
        {"postgresql_partition_by": "LIST (period_id)"},
    )


class ThingReplica(Base):
    """What the click path needs of a thing, fed by ``thing.*`` events from accounts."""

    __tablename__ = "things"
    thing_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, server_default="")
    deleted: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # the newest change applied; a late, older event is ignored
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MeansReplica(Base):
    """Whether a reader can pay their budget, fed by ``means.changed`` from settlement."""

    __tablename__ = "means"
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    has_means: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ThingCounter(Base):
    """Clicks per thing: all-time and in the open period, kept by the workers' batches."""

    __tablename__ = "thing_counters"
    thing_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    flattrs: Mapped[int] = mapped_column(BigInteger, server_default="0")
    period_id: Mapped[str] = mapped_column(String(16))
    period_flattrs: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_flattr_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    thing_id: Mapped[int] = mapped_column(BigInteger)
    # periods still to flattr; null = until cancelled
    periods_left: Mapped[int | None] = mapped_column(Integer, nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (Index("subscriptions_one_per_thing", "user_id", "thing_id", unique=True),)


class ProcessedEvent(Base):
    __tablename__ = "processed_events"
    event_id: Mapped[str] = mapped_column(UUID(as_uuid=False), primary_key=True)
    handler: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
