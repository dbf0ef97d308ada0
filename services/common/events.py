"""The event envelope every service publishes, and where events are published.

Events travel on nameko's topology: a durable topic exchange ``<service>.events`` per source
service, the event type as routing key, JSON bodies, persistent messages. A nameko
``@event_handler("accounts", "thing.created")`` receives the whole envelope below.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

ENVELOPE_VERSION = 1


def envelope(event_type: str, data: dict, *, version: int = ENVELOPE_VERSION) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "version": version,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "data": data,
    }


def exchange_name(source_service: str) -> str:
    return f"{source_service}.events"


def first_seen(session, schema: str, event: dict, handler: str) -> bool:
    """Record in ``<schema>.processed_events`` that ``handler`` handled ``event`` (in the caller's
    transaction); False when it already had: a redelivery, to be skipped."""
    from sqlalchemy import text

    inserted = session.execute(
        text(f"INSERT INTO {schema}.processed_events (event_id, handler) VALUES (:e, :h) ON CONFLICT DO NOTHING RETURNING event_id"),
        {"e": event["event_id"], "h": handler},
    ).scalar()
    return inserted is not None


def subscriber(source: str, event_type: str):
    """``@subscriber("accounts", "thing.created")``: a nameko event handler that survives outages.

    While the service's database is not answering, the event goes back to its queue (after a
    pause, so the retry does not spin) and is handled once the database is back. Any other error
    is a bug in handling this one event: it is logged with the whole event, for an operator to
    replay, and not retried for ever.
    """
    import functools
    import logging

    import eventlet
    from nameko.events import event_handler
    from sqlalchemy.exc import DBAPIError

    from services.common.rpc import database_unavailable

    log = logging.getLogger(f"events.{source}.{event_type}")

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(self, event):
            try:
                return fn(self, event)
            except DBAPIError as exc:
                if database_unavailable(exc):
                    log.warning("database unavailable; %s goes back to the queue", event_type)
                    eventlet.sleep(1)
                    raise
                log.exception("could not handle %s; event kept here for replay: %r", event_type, event)
            except Exception:
                log.exception("could not handle %s; event kept here for replay: %r", event_type, event)

        return event_handler(source, event_type, requeue_on_error=True)(wrapper)

    return decorate
