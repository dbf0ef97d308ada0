"""The broker topology every process declares at start-up.

An event published to an exchange with no bound queue is dropped, so the exchanges of every
source service and the queues of every known subscriber are declared before anything
publishes, by every service's start-up and by ``python -m services.common.topology``. The
handlers of ``@subscriber`` and ``@batch_subscriber`` consume from the queue ``handler_queue``
makes (nameko's name, durable, not auto-deleted, a quorum queue with ``BROKER_QUEUE_TYPE=quorum``),
and ``tests/unit/test_topology.py`` checks that ``SUBSCRIPTIONS`` names every handler of
every service, so a handler left out here cannot silently miss the events published before its
service first starts.
"""
from __future__ import annotations

import sys

from kombu import Exchange, Queue

from services.common import broker, settings
from services.common.events import exchange_name

SOURCES = ("accounts", "clicks", "settlement")

# (source service, event type, subscribing service, handler method)
SUBSCRIPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("accounts", "budget.changed", "settlement", "on_budget_changed"),
    ("accounts", "thing.created", "clicks", "on_thing_created"),
    ("accounts", "thing.updated", "clicks", "on_thing_updated"),
    ("accounts", "thing.deleted", "clicks", "on_thing_deleted"),
    ("accounts", "thing.claimed", "clicks", "on_thing_claimed"),
    ("settlement", "means.changed", "clicks", "on_means_changed"),
    ("settlement", "means.batch_changed", "clicks", "on_means_batch_changed"),
    ("clicks", "things.counted", "accounts", "on_things_counted"),
    ("settlement", "payout.requested", "payouts", "on_payout_requested"),
    ("accounts", "thing.created", "settlement", "on_thing_created"),
    ("accounts", "thing.updated", "settlement", "on_thing_updated"),
    ("accounts", "thing.deleted", "settlement", "on_thing_deleted"),
    ("accounts", "thing.claimed", "settlement", "on_thing_claimed"),
    ("clicks", "period.sealed", "settlement_batch", "on_period_sealed"),
    ("settlement", "period.settled", "accounts", "on_period_settled"),
    ("settlement", "payout.completed", "accounts", "on_payout_completed"),
    ("accounts", "user.deleted", "clicks", "on_user_deleted"),
    ("accounts", "user.deleted", "settlement", "on_user_deleted"),
)


def handler_queue(source: str, event_type: str, service: str, method: str, config: dict | None = None) -> Queue:
    """The queue of ``service``'s handler ``method`` of ``source``'s ``event_type`` events, as its
    handler declares it (``config``: the service's nameko config; None: the environment's)."""
    return Queue(
        f"evt-{source}-{event_type}--{service}.{method}",
        exchange=Exchange(exchange_name(source), type="topic", durable=True, auto_delete=False),
        routing_key=event_type,
        durable=True,
        auto_delete=False,
        queue_arguments=broker.durable_queue_arguments(config),
    )


def declare(amqp_uri: str, config: dict | None = None) -> None:
    """Declare every exchange and subscriber queue, on the first node of ``amqp_uri`` that answers."""
    with broker.kombu_connection(amqp_uri) as conn:
        channel = conn.default_channel
        for source in SOURCES:
            Exchange(exchange_name(source), type="topic", durable=True, auto_delete=False)(channel).declare()
        for sub in SUBSCRIPTIONS:
            handler_queue(*sub, config=config)(channel).declare()


if __name__ == "__main__":
    declare(sys.argv[1] if len(sys.argv) > 1 else settings.get("AMQP_URI"))
    print("broker topology declared")
