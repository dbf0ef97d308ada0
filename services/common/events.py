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
