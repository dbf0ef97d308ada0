"""The click-request messages between the gateway and the click workers, and the AMQP helpers
both sides use (connections, the queues, a reconnecting consume loop).

Click requests travel on the durable ``clicks.requests`` queue (default exchange) as transient
messages that expire when their deadline passes, with ``reply_to`` = the sender's reply queue.
A message carries one or more requests, in one of two forms:

- ``{"requests": [[request_id, user_id, thing_id, source, deadline, http_request_id], ...]}``,
  what the gateway sends: the clicks that arrived while its previous message was being sent.
  ``source`` is ``api``, ``button`` or ``subscription`` (anything else counts as ``api``);
  ``deadline`` (Unix time, may be null) is when the caller stops waiting: a worker that reaches
  the request later answers ``expired`` and does not carry it out; ``http_request_id`` (may be
  missing) names the HTTP request for the logs; workers read only the first five fields.
- ``{"user_id", "thing_id", "source"}`` with the request id as the message's ``correlation_id``.

Workers answer with one message per reply queue and batch: a JSON list of
``[request_id, answer]`` pairs. An answer is ``{"status": ...}``, one of ``ok`` (with
``"period"``), ``flattr_once``, ``flattr_owner``, ``no_means``, ``not_found``, ``expired``,
``unavailable`` (the worker could not ask who owns the thing or whether the reader can pay),
``invalid_request`` (the message could not be read) or ``server_error`` (the request failed on
its own data and went to ``clicks.dead``), with ``"thing": {"id", "url", "title", "flattrs"}``
when the thing was found. A message is acknowledged only after every request in it is committed
and answered.
"""
from __future__ import annotations

import socket

import amqp

from services.common import broker

REQUEST_QUEUE = "clicks.requests"
# requests that failed on their own data, with the reason in the x-reason header, for an operator
DEAD_LETTER_QUEUE = "clicks.dead"


def declare_queues(channel) -> None:
    """The click request and dead-letter queues, of the type ``BROKER_QUEUE_TYPE`` says: as
    quorum queues, a click request waiting for a worker survives the loss of a node."""
    arguments = broker.durable_queue_arguments()
    channel.queue_declare(REQUEST_QUEUE, durable=True, auto_delete=False, arguments=arguments)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, auto_delete=False, arguments=arguments)


READ_AHEAD = 256 * 1024


def connect(uri: str, read_ahead: bool = False) -> amqp.Connection:
    """A connected py-amqp connection to a node of ``uri`` (``services.common.broker.connect``:
    the first node that answers, with heartbeats the owner ticks).

    ``read_ahead`` makes py-amqp read the socket in large chunks: by itself it asks the socket for
    exactly the bytes of each frame part, three system calls per frame, which is most of a
    consumer's time when messages are small. The extra bytes wait in py-amqp's own read buffer
    (see ``buffered``)."""
    conn = broker.connect(uri)
    if read_ahead:
        transport = conn.transport
        sock_recv = transport.sock.recv
        transport._quick_recv = lambda n: sock_recv(max(n, READ_AHEAD))
    return conn


def buffered(conn: amqp.Connection) -> bool:
    """Whether a frame (or part of one) is already read and waiting in py-amqp's buffer."""
    return bool(getattr(conn.transport, "_read_buffer", b""))


def consume_forever(uri: str, subscribe, closing, on_lost, name: str, retry_seconds: float = 0.5, on_tick=None) -> None:
    """Consume on a connection of its own until ``closing()``, reconnecting after the broker goes.

    ``subscribe(channel)`` declares and consumes what it needs on each new connection (it is
    called again after a reconnect, to another node of a cluster if that one answers first, so
    exclusive queues are made anew); ``on_lost()`` runs each time a connection ends, to fail or
    forget what depended on it; ``on_tick()``, if given, about once a second. A node that stops
    answering without closing the connection (frozen, cut off) is noticed by its missing
    heartbeats. For the gateway's listeners (click replies, token revocations), each on a thread
    of its own."""
    import logging
    import threading

    log = logging.getLogger(name)
    while not closing():
        conn = None
        try:
            conn = connect(uri)
            subscribe(conn.channel())
            while not closing():
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass
                conn.heartbeat_tick()
                if on_tick is not None:
                    on_tick()
        except Exception as exc:
            if not closing():
                log.warning("%s lost the broker: %s", name, exc)
                if conn is not None:
                    broker.node_lost(conn)
        finally:
            on_lost()
            if conn is not None:
                try:
                    conn.collect()
                except Exception:  # a broken connection has nothing left to release
                    pass
        if not closing():
            threading.Event().wait(retry_seconds)
