"""Where events are published, and how they are received.

Events travel on nameko's topology: a durable topic exchange ``<service>.events`` per source
service, the event type as routing key, JSON bodies, persistent messages. A nameko
``@event_handler("accounts", "thing.created")`` receives the whole envelope: ``event_id``,
``type``, ``version``, ``occurred_at`` and ``data``, as ``services.common.outbox`` writes it and
``services/common/contracts/envelope.v1.schema.json`` describes it.
"""
from __future__ import annotations

import functools

# the envelope's version, in every event the outbox writes
ENVELOPE_VERSION = 1


def new_id() -> str:
    """A random id in UUID form, for ids that are looked up, not kept secret (request ids, click
    request ids): a third of the cost of ``uuid.uuid4()``, which reads the kernel's random source
    for each. ``random`` is reseeded from that source in every forked process."""
    import random

    digits = f"{random.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


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


@functools.cache
def durable_event_handler():
    """nameko's ``EventHandler`` consuming the queue ``services.common.topology`` declares for it:
    the same name nameko gives it, with the arguments ``BROKER_QUEUE_TYPE`` asks for (a quorum
    queue on a cluster). nameko's own ``setup`` would declare it without them, and a queue
    declared twice with different arguments is refused."""
    from nameko.events import SERVICE_POOL, EventHandler
    from nameko.messaging import Consumer

    from services.common import topology

    class DurableEventHandler(EventHandler):
        def setup(self):
            assert self.handler_type == SERVICE_POOL, "only service-pool handlers have a declared topology"
            self.queue = topology.handler_queue(
                self.source_service, self.event_type, self.container.service_name, self.method_name, self.container.config
            )
            Consumer.setup(self)

    return DurableEventHandler


def subscriber(source: str, event_type: str):
    """``@subscriber("accounts", "thing.created")``: a nameko event handler that survives outages.

    While the service's database is not answering, the event goes back to its queue (after a
    pause, so the retry does not spin) and is handled once the database is back. Any other error
    is a bug in handling this one event: it is logged with the whole event, for an operator to
    replay, and not retried for ever.
    """
    import logging

    import eventlet
    from sqlalchemy.exc import DBAPIError

    from services.common.rpc import database_unavailable

    log = logging.getLogger(f"events.{source}.{event_type}")
    DurableEventHandler = durable_event_handler()

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

        return DurableEventHandler.decorator(source, event_type, requeue_on_error=True)(wrapper)

    return decorate


def batch_subscriber(source: str, event_type: str, max_batch: int = 500):
    """``@batch_subscriber("clicks", "things.counted")``: the handler receives a list of events,
    everything waiting in its queue up to ``max_batch``, in one worker, so it can apply them in
    one transaction. A backlog of tens of thousands of events then costs tens of transactions,
    not tens of thousands. The events of a batch are acknowledged together after the handler
    returns; if it raises, they all go back to the queue (after a pause) and come again, so the
    handler must skip events it has seen (``first_seen_many``)."""
    import logging

    import eventlet
    from nameko.messaging import QueueConsumer

    log = logging.getLogger(f"events.{source}.{event_type}")
    DurableEventHandler = durable_event_handler()

    class BatchQueueConsumer(QueueConsumer):
        # its own channel, with room for whole batches in flight, apart from the one-at-a-time
        # handlers whose prefetch is the container's worker count
        @property
        def prefetch_count(self):
            return max_batch

    class BatchEventHandler(DurableEventHandler):
        queue_consumer = BatchQueueConsumer()

        def setup(self):
            super().setup()
            self._pending: list = []
            self._flushing = False

        def handle_message(self, body, message):
            self._pending.append((body, message))
            if not self._flushing:
                self._flushing = True
                self.container.spawn_managed_thread(self._flush)

        def _flush(self):
            eventlet.sleep(0)  # let the rest of what the broker already sent join this batch
            while self._pending:
                batch, self._pending = self._pending[:max_batch], self._pending[max_batch:]
                done = eventlet.event.Event()
                try:
                    self.container.spawn_worker(
                        self, ([body for body, _ in batch],), {},
                        context_data={}, handle_result=functools.partial(self._settle, [m for _, m in batch], done),
                    )
                except Exception:  # the container is stopping: the broker gets them back
                    for _, message in batch:
                        self.queue_consumer.requeue_message(message)
                    continue
                done.wait()
                eventlet.sleep(0)
            self._flushing = False

        def _settle(self, messages, done, worker_ctx, result=None, exc_info=None):
            try:
                for message in messages:
                    if exc_info is not None:
                        self.queue_consumer.requeue_message(message)
                    else:
                        self.queue_consumer.ack_message(message)
            finally:
                done.send(True)
            return result, exc_info

    from sqlalchemy.exc import DBAPIError

    from services.common.rpc import database_unavailable

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(self, events):
            try:
                return fn(self, events)
            except DBAPIError as exc:
                if database_unavailable(exc):
                    log.warning("database unavailable; %d %s events go back to the queue", len(events), event_type)
                else:
                    log.exception("could not handle %d %s events; they go back to the queue", len(events), event_type)
                eventlet.sleep(1)
                raise

        return BatchEventHandler.decorator(source, event_type)(wrapper)

    return decorate


def first_seen_many(session, schema: str, events: list[dict], handler: str) -> list[dict]:
    """The events of ``events`` that ``handler`` had not handled yet (each once, in order),
    recorded as handled in the caller's transaction: the batch twin of ``first_seen``."""
    from sqlalchemy import text

    ids = sorted({e["event_id"] for e in events})  # in key order: two batches sharing ids never deadlock
    new = set(
        session.execute(
            text(
                f"INSERT INTO {schema}.processed_events (event_id, handler) "
                "SELECT e, :h FROM unnest(CAST(:ids AS text[])) AS e ON CONFLICT DO NOTHING RETURNING event_id"
            ),
            {"ids": ids, "h": handler},
        ).scalars()
    )
    fresh, seen = [], set()
    for event in events:
        if event["event_id"] in new and event["event_id"] not in seen:
            seen.add(event["event_id"])
            fresh.append(event)
    return fresh
