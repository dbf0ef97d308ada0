"""Transactional outbox: an event is published if and only if the transaction that wrote it committed.

A service records an event in its own schema's ``outbox`` table inside the transaction that makes
the change. The relay, running in every replica of the service, takes unsent rows with
``FOR UPDATE SKIP LOCKED`` (so replicas share the work without publishing a row twice at once),
publishes them with publisher confirms, and marks them sent in the same database transaction.
If the process dies after the broker confirmed but before the mark committed, the row is
published again: delivery is at-least-once and consumers deduplicate by ``event_id``.
"""
from __future__ import annotations

import json
import logging

import eventlet
from kombu import Exchange, Producer
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from services.common import broker, settings
from services.common.db import engine_for
from services.common.events import ENVELOPE_VERSION, exchange_name
from services.common.relay_thread import WokenRelay

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
        Column("event_type", String(64), nullable=False),
        Column("body", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        # the relay only ever looks for unsent rows; keep that lookup small as the table grows
        Index("outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )


def _write(session, schema: str, event_type: str, data_query: str, params: dict | None = None, returning: bool = True):
    """The one statement that writes events: an envelope around each row of ``data_query`` (a
    SELECT with one jsonb column ``data``), all of them with the same version (``ENVELOPE_VERSION``).

    ``occurred_at`` is the moment of writing in UTC, not the transaction's start: a long batch
    reports a state that may include other transactions committed while it ran (a deposit), and
    its event must not look older than theirs to a consumer that keeps the newest."""
    return session.execute(
        text(
            f"INSERT INTO {schema}.outbox (event_id, event_type, body) "
            "SELECT e.id, CAST(:event_type AS text), jsonb_build_object('event_id', e.id, 'type', CAST(:event_type AS text), "
            "'version', CAST(:envelope_version AS integer), "
            """'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), 'data', e.data) """
            f"FROM (SELECT gen_random_uuid() AS id, d.data FROM ({data_query}) d) e" + (" RETURNING body" if returning else "")
        ),
        {**(params or {}), "event_type": event_type, "envelope_version": ENVELOPE_VERSION},
    )


def record(session, table: Table, event_type: str, data: dict) -> dict:
    """Add an event to the outbox in the session's transaction; returns the envelope."""
    return _write(session, table.schema, event_type, "SELECT CAST(:data AS jsonb) AS data", {"data": json.dumps(data)}).scalar_one()


def record_many(session, schema: str, event_type: str, data_query: str, params: dict | None = None) -> int:
    """Write one event per row of ``data_query`` (a SELECT with one jsonb column ``data``) in a
    single statement: the set-based form of ``record``, with the same envelope. Returns how many
    (not the envelopes: a batch's events would all come back into the process's memory)."""
    return _write(session, schema, event_type, data_query, params, returning=False).rowcount


def unsent_before(session, table: Table, event_type: str, recorded_before) -> int:
    """How many ``event_type`` events recorded at or before ``recorded_before`` are still in the
    outbox, unpublished: a consumer that must have heard every one of them (settlement, of the
    budget changes before a seal) waits while this is not 0."""
    return session.execute(
        select(func.count()).select_from(table).where(
            table.c.event_type == event_type, table.c.sent_at.is_(None), table.c.created_at <= recorded_before
        )
    ).scalar_one()


class OutboxRelay:
    """Moves committed outbox rows to the broker. Usable on its own (ops command, tests)."""

    def __init__(self, db_url: str, amqp_uri: str, source_service: str, schema: str, batch_size: int = 200):
        self.engine = engine_for(db_url)
        self.amqp_uri = amqp_uri
        self.exchange = Exchange(exchange_name(source_service), type="topic", durable=True, auto_delete=False)
        self.schema = schema
        self.batch_size = batch_size
        self._connection = None

    def _producer(self) -> Producer:
        if self._connection is None:
            # any node of a cluster; one that failed this relay lately is tried last
            self._connection = broker.kombu_connection(self.amqp_uri, confirm_publish=True)
        channel = self._connection.default_channel
        self.exchange.declare(channel=channel)
        return Producer(channel, exchange=self.exchange, serializer="json")

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            finally:
                self._connection = None

    def relay_once(self) -> int:
        """Publish one batch of unsent events; returns how many were sent."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    f"SELECT id, event_type, body FROM {self.schema}.outbox WHERE sent_at IS NULL "
                    "ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
                ),
                {"n": self.batch_size},
            ).all()
            if not rows:
                return 0
            try:
                producer = self._producer()
                for row in rows:
                    # a node that stops answering (frozen, cut off) would keep the confirm, and
                    # these rows locked, for ever: the batch is published again, elsewhere
                    producer.publish(row.body, routing_key=row.event_type, delivery_mode=2, confirm_timeout=broker.CONFIRM_SECONDS)
            except Exception:
                if self._connection is not None:
                    broker.node_lost(self._connection, self.amqp_uri)
                self.close()
                raise
            conn.execute(
                text(f"UPDATE {self.schema}.outbox SET sent_at = now() WHERE id = ANY(:ids)"),
                {"ids": [r.id for r in rows]},
            )
            return len(rows)

    def drain(self) -> int:
        total = 0
        while True:
            sent = self.relay_once()
            total += sent
            if sent < self.batch_size:
                return total


class Outbox(WokenRelay):
    """``events = Outbox("accounts", "ACCOUNTS_DATABASE_URL", table)``.

    ``self.events.record(self.db, "thing.created", {...})`` writes the event in the worker's
    transaction and wakes the relay when that transaction commits. Unless ``OUTBOX_RELAY`` is
    ``off`` in the container config, the relay runs in a background thread of the service.
    """

    def __init__(self, source_service: str, url_key: str, table: Table):
        super().__init__()
        self.source_service = source_service
        self.url_key = url_key
        self.table = table
        self.relay = None

    def setup(self):
        config = self.container.config
        self.relay = OutboxRelay(config[self.url_key], config["AMQP_URI"], self.source_service, self.table.schema)
        self.poll_seconds = float(config.get("OUTBOX_POLL_SECONDS", settings.get("OUTBOX_POLL_SECONDS")))
        self.enabled = str(config.get("OUTBOX_RELAY", "on")).lower() != "off"

    def stop(self):
        super().stop()
        self.relay.close()

    def _run(self):
        while self._running:
            try:
                self.relay.drain()
            except Exception:
                log.exception("outbox relay of %s failed; retrying", self.source_service)
                eventlet.sleep(1)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def get_dependency(self, worker_ctx):
        return _Recorder(self)


class _Recorder:
    def __init__(self, outbox: Outbox):
        self._outbox = outbox

    def record(self, session, event_type: str, data: dict) -> dict:
        body = record(session, self._outbox.table, event_type, data)
        self._outbox.wake_after_commit(session)
        return body


class TableRecorder:
    """The recorder for code that runs outside a nameko worker (batches, ops commands, tests):
    events go to the outbox table in the session's transaction; a running relay publishes them."""

    def __init__(self, table: Table):
        self.table = table

    def record(self, session, event_type: str, data: dict) -> dict:
        return record(session, self.table, event_type, data)
