"""Sending click requests to the click workers and waiting for their answers.

The hot path does not go through nameko RPC: the gateway publishes each click as a message on the
durable ``clicks.requests`` queue, with ``reply_to`` (this process's reply queue) and
``correlation_id``, and the workers answer in batches after their commit. A 2xx is only ever
built from such an answer, so it means the click is committed in PostgreSQL: the click's
durability is the database's, not the message's. So the request is a transient message: a broker
that dies drops the requests still waiting, their callers get 503 and may retry, and no answer
was false. (Writing every request to the broker's disk as well costed a third of the broker's CPU
and bought no guarantee.) When the broker or the workers do not answer in time the caller gets
``ServiceUnavailable`` (503); the request expires in the queue after the same time, so a click the
caller was told failed is not made later. On a cluster (``BROKER_QUEUE_TYPE=quorum``) the
requests queue is a quorum queue, so a waiting request outlives the node that took it; a click
in flight on a node that goes away (the gateway's connection to it, or its reply queue, lost)
is answered 503 at once, and may still be carried out by a worker before its deadline: a 503
says the outcome is unknown, a 2xx is only ever a committed click.

One publishing connection per process (used under a lock: py-amqp is not thread-safe) and one
reply consumer thread per process, which blocks in ``drain_events`` with a long timeout and hands
each answer to the request thread waiting for it. A click that got no answer in time retires the
publishing connection it went out on (``_abandon_publisher`` says why).
"""
from __future__ import annotations

import json
import logging
import threading
import time

import amqp

from services.common import broker
from services.common.click_messages import REQUEST_QUEUE, connect, consume_forever, declare_queues
from services.common.events import new_id
from services.gateway import deadline as request_deadline
from services.gateway.rpc import ServiceUnavailable

log = logging.getLogger(__name__)

class _Waiter:
    __slots__ = ("event", "answer", "publisher")

    def __init__(self):
        self.event = threading.Event()
        self.answer = None
        self.publisher = 0  # the publishing connection its request went out on (a count)


class ClickClient:
    def __init__(self, amqp_uri: str, timeout: float = 10.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._publish_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list = []
        self._publishing = False
        self._publisher = None  # (connection, channel)
        self._publishers_made = 0  # the current publisher's number
        self._abandoned = 0  # publishers up to this number are not to be used again
        self._waiters: dict[str, _Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._reply_queue = None
        self._consumer = None
        self._consumer_lock = threading.Lock()
        self._ready = threading.Event()
        self._closing = False

    # -- the reply consumer ------------------------------------------------------------------------

    def _ensure_consumer(self) -> str:
        with self._consumer_lock:
            if self._consumer is None or not self._consumer.is_alive():
                self._consumer = threading.Thread(target=self._consume, name="click-replies", daemon=True)
                self._consumer.start()
        if not self._ready.wait(max(min(self.timeout, 5.0, request_deadline.remaining(self.timeout)), 0.0)):
            raise ServiceUnavailable("the broker is not answering")
        return self._reply_queue

    def _consume(self):
        def subscribe(channel):
            queue, _, _ = channel.queue_declare("", exclusive=True, auto_delete=True)
            channel.basic_consume(queue, callback=self._on_reply, no_ack=True)
            self._reply_queue = queue
            self._ready.set()

        def lost():  # every waiting request fails now (503)
            self._ready.clear()
            self._fail_waiters()

        consume_forever(self.amqp_uri, subscribe, lambda: self._closing, lost, "click reply consumer", on_tick=self._check_publisher)

    def _on_reply(self, message):
        try:
            items = json.loads(message.body)
        except ValueError:
            log.error("unreadable click reply")
            return
        with self._waiters_lock:
            for correlation_id, answer in items:
                waiter = self._waiters.pop(correlation_id, None)
                if waiter is not None:
                    waiter.answer = answer
                    waiter.event.set()

    def _fail_waiters(self):
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.event.set()  # with no answer: the caller answers 503

    # -- publishing -------------------------------------------------------------------------------

    def _publish(self, requests: list, reply_to: str, ttl: float):
        """One message carrying every click request given (see ``_submit``)."""
        with self._publish_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is not None and self._publishers_made <= self._abandoned:
                        log.warning("click publisher: a click sent on it got no answer in time; connecting anew")
                        broker.node_lost(self._publisher[0])
                        self._drop_publisher()
                    if self._publisher is None:
                        conn = connect(self.amqp_uri)
                        channel = conn.channel()
                        declare_queues(channel)
                        self._publisher = (conn, channel)
                        self._publishers_made += 1
                    message = amqp.Message(
                        json.dumps({"requests": requests}),
                        content_type="application/json",
                        # transient: see the module's docstring
                        delivery_mode=1,
                        reply_to=reply_to,
                        # a request nobody took in time expires instead of being carried out late
                        expiration=str(max(int(ttl * 1000), 1)),
                    )
                    self._publisher[1].basic_publish(message, exchange="", routing_key=REQUEST_QUEUE)
                    return
                except BaseException as exc:
                    # half a frame may have gone out (an interrupted write): never reuse the connection
                    self._drop_publisher()
                    if not isinstance(exc, Exception):
                        raise
                    if attempt == 2:
                        raise ServiceUnavailable(f"cannot publish the click: {type(exc).__name__}") from exc

    def _submit(self, request: list, waiter: _Waiter, reply_to: str) -> None:
        """Queue a request for publishing. The first caller to find no publish under way publishes
        everything waiting, in one message, and goes on while more arrives: under load many clicks
        share one message, which costs the broker, this process and the workers far less than one
        message each; with a single caller it is one message, sent at once."""
        with self._pending_lock:
            self._pending.append((request, waiter))
            if self._publishing:
                return
            self._publishing = True
        batch = []
        try:
            while True:
                time.sleep(0)  # let the requests that are ready to send join this message
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                    if not batch:
                        self._publishing = False
                        return
                # the message lives as long as the most patient request in it still waits
                ttl = max(r[4] for r, _ in batch) - time.time()
                try:
                    self._publish([r for r, _ in batch], reply_to, ttl)
                    for _, sent in batch:
                        sent.publisher = self._publishers_made
                except ServiceUnavailable:
                    for _, failed in batch:
                        failed.event.set()  # with no answer: 503
                batch = []
        except BaseException:
            # interrupted (the request's deadline): hand the publishing role back, and fail what
            # this caller had taken so no request waits on a message that was never sent
            with self._pending_lock:
                self._publishing = False
            for _, failed in batch:
                failed.event.set()
            raise

    def _check_publisher(self):
        """About once a second (from the reply consumer's thread): take what the publishing
        connection's node sent and tick its heartbeats, so that a node that went away or stopped
        answering (frozen, cut off; its socket still takes our writes) is left for another
        before more clicks are sent into it. A click being published right now skips a turn."""
        if not self._publish_lock.acquire(blocking=False):
            return
        try:
            if self._publisher is not None:
                try:
                    broker.keep_alive(self._publisher[0])
                except Exception as exc:
                    log.warning("click publisher lost its broker node (%s); the next click connects anew", exc)
                    broker.node_lost(self._publisher[0])
                    self._drop_publisher()
        finally:
            self._publish_lock.release()

    def _abandon_publisher(self, number: int) -> None:
        """A click sent on publisher ``number`` got no answer in time: the next click goes out on a
        new connection. Its channel may be the reason: on RabbitMQ before 4.2 a channel that sent
        unconfirmed messages to a quorum queue while the queue's leader was cut off can go on
        accepting messages that are never enqueued, until that node is back (rabbitmq-server
        #14589). A new channel is not affected; if the workers were only slow, a reconnect costs a
        few milliseconds."""
        self._abandoned = max(self._abandoned, number)

    def _drop_publisher(self):
        if self._publisher is not None:
            try:
                self._publisher[0].collect()
            except Exception:
                pass
            self._publisher = None

    # -- the call -----------------------------------------------------------------------------------

    def flattr(self, user_id: int, thing_id: int, source: str = "api", request_id: str | None = None) -> dict:
        """The worker's answer: ``{"status": "ok" | "flattr_once" | ..., "thing": {...}}``."""
        wait = min(self.timeout, request_deadline.remaining(self.timeout))
        if wait <= 0:
            raise ServiceUnavailable("no time left before the request's deadline")
        reply_to = self._ensure_consumer()
        correlation_id = new_id()
        waiter = _Waiter()
        with self._waiters_lock:
            self._waiters[correlation_id] = waiter
        gives_up_at = time.time() + wait
        try:
            # a second before we give up: a worker that gets the request later does not carry it out
            worker_deadline = gives_up_at - min(1.0, wait / 2)
            self._submit([correlation_id, user_id, thing_id, source, worker_deadline, request_id or request_deadline.request_id()], waiter, reply_to)
            answered = waiter.event.wait(max(gives_up_at - time.time(), 0.0))
        finally:
            with self._waiters_lock:
                self._waiters.pop(correlation_id, None)
        if not answered:
            self._abandon_publisher(waiter.publisher)
        if not answered or waiter.answer is None or waiter.answer.get("status") == "expired":
            raise ServiceUnavailable("the click workers did not answer in time")
        return waiter.answer

    def close(self):
        self._closing = True
        with self._publish_lock:
            self._drop_publisher()
        if self._consumer is not None:
            self._consumer.join(timeout=2)
