"""How every process reaches RabbitMQ: a list of nodes to fail over between, the queue type of
what must not be lost, and heartbeats that notice a node that stopped answering.

``AMQP_URI`` names one broker, or the nodes of a cluster separated by ``;`` (kombu's failover
form: ``amqp://u:p@rabbit-1:5672/;amqp://u:p@rabbit-2:5672/``). nameko and kombu connect to the
first node that answers and, once a connection is lost, to the next (``round-robin``). The
processes that speak AMQP through py-amqp directly (the click worker, the gateway's click client
and listeners) connect with ``connect`` below, which does the same and tries the node that
failed them last.

``BROKER_QUEUE_TYPE`` is ``classic`` or ``quorum``. With ``quorum`` the queues whose messages
must survive the loss of a node (every event queue, the RPC request queues ``rpc-<service>``,
the services' own RPC reply queues, the click requests and the dead-letter queue) are quorum
queues: replicated to a majority of the cluster's nodes before the broker confirms a publish,
and led by another node within seconds when theirs goes. Queues that belong to one connection
of the gateway or a click worker (their RPC and click reply queues, the revocation listener's)
stay classic, exclusive or expiring: quorum queues can be neither, and a caller that loses its
reply answers 503 at its deadline. Quorum queues refuse a global QoS; every consumer here sets
its prefetch per consumer.

A queue keeps the type it was declared with. Declaring it again with another type fails
(``PRECONDITION_FAILED - inequivalent arg 'x-queue-type'``), so switching a running platform is
an operator's step: see the README ("Broker: a cluster and quorum queues").
"""
from __future__ import annotations

import os
import random
import socket
import threading
import time

import amqp
import kombu
import kombu.exceptions
from eventlet.patcher import original

from services.common import settings

CLASSIC = "classic"
QUORUM = "quorum"
QUEUE_TYPES = (CLASSIC, QUORUM)

# how long a publisher waits for the broker to confirm a message before it takes another node (a
# quorum queue confirms once a majority of its nodes has the message: milliseconds when well)
CONFIRM_SECONDS = 5.0
# how long a publisher that lost its connection tries the nodes in turn before it gives up
FAILOVER_SECONDS = 20.0
# seconds a node that failed a connection is tried after the others
SUSPECT_SECONDS = 60.0
# where in the list of nodes this process starts (forked children, the gateway's, choose anew)
_ROTATION = random.SystemRandom().randrange(1 << 30)


def _rotate_anew() -> None:
    global _ROTATION
    _ROTATION = random.SystemRandom().randrange(1 << 30)


os.register_at_fork(after_in_child=_rotate_anew)


def node_urls(amqp_uri: str) -> list[str]:
    """The node URLs of an ``AMQP_URI``, in the order given."""
    urls = [part.strip() for part in amqp_uri.split(";") if part.strip()]
    if not urls:
        raise ValueError("AMQP_URI names no broker")
    return urls


def queue_type(config: dict | None = None) -> str:
    value = (settings.setting(config, "BROKER_QUEUE_TYPE") if config is not None else settings.get("BROKER_QUEUE_TYPE")).lower()
    if value not in QUEUE_TYPES:
        raise ValueError(f"BROKER_QUEUE_TYPE must be one of {', '.join(QUEUE_TYPES)}, not {value!r}")
    return value


def durable_queue_arguments(config: dict | None = None) -> dict:
    """The ``queue_declare`` arguments of a queue whose messages must not be lost with a node."""
    return {"x-queue-type": QUORUM} if queue_type(config) == QUORUM else {}


def heartbeat_seconds(config: dict | None = None) -> int:
    return int(settings.setting(config, "BROKER_HEARTBEAT") if config is not None else settings.get("BROKER_HEARTBEAT"))


class _Suspects:
    """Nodes that failed this process lately (a refused or lost connection), tried last."""

    def __init__(self):
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, url: str) -> None:
        with self._lock:
            self._since[url] = time.monotonic()

    def clear(self, url: str) -> None:
        with self._lock:
            self._since.pop(url, None)

    def ordered(self, urls: list[str]) -> list[str]:
        now = time.monotonic()
        with self._lock:
            recent = {u: t for u, t in self._since.items() if now - t < SUSPECT_SECONDS}
        # each process starts at a node of its own (connections, and the quorum queues they
        # declare, spread over the cluster); the suspects last, the longest-ago failure first
        start = _ROTATION % len(urls)
        urls = urls[start:] + urls[:start]
        return [u for u in urls if u not in recent] + sorted((u for u in urls if u in recent), key=recent.get)


_suspects = _Suspects()


def ordered_uri(amqp_uri: str) -> str:
    """``amqp_uri`` with the nodes that failed this process lately moved to the end: for kombu,
    which tries the nodes of a failover URI in order."""
    return ";".join(_suspects.ordered(node_urls(amqp_uri)))


def _host_port(url: str) -> tuple[str | None, int]:
    info = kombu.Connection(url)
    return info.hostname, info.port or 5672


def node_lost(conn, amqp_uri: str | None = None) -> None:
    """Note that the node of ``conn`` failed this process (a connection lost, a publish not
    confirmed in time): it is tried last for a while by ``connect``, ``kombu_connection`` and
    ``ordered_uri``. ``conn`` is one ``connect`` made, or a kombu connection (made from
    ``amqp_uri``, or from a failover list it keeps)."""
    url = getattr(conn, "node_url", None)
    candidates = node_urls(amqp_uri) if amqp_uri is not None else [u for u in getattr(conn, "alt", None) or [] if isinstance(u, str)]
    if url is None and candidates:
        here = (getattr(conn, "hostname", None), getattr(conn, "port", None) or 5672)
        url = next((u for u in candidates if _host_port(u) == here), None)
    if url is not None:
        _suspects.mark(url)


def kombu_connection(amqp_uri: str, connect_timeout: float = 5.0, **transport_options) -> kombu.Connection:
    """A kombu connection that tries the nodes of ``amqp_uri`` in turn (those that failed this
    process lately last), giving each ``connect_timeout`` seconds (kombu's own default gives all
    of them together that long)."""
    nodes = len(node_urls(amqp_uri))
    options = {"connect_retries_timeout": connect_timeout * nodes + 1, **transport_options}
    return kombu.Connection(ordered_uri(amqp_uri), connect_timeout=connect_timeout, transport_options=options)


def _first_answering(amqp_uri: str, open_one):
    """``open_one(url)`` for the nodes of ``amqp_uri`` in this process's order until one answers;
    each node that does not is marked, the one that does is cleared and named by the connection's
    ``node_url``."""
    errors = []
    for url in _suspects.ordered(node_urls(amqp_uri)):
        try:
            conn = open_one(url)
        except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.OperationalError) as exc:
            _suspects.mark(url)
            info = kombu.Connection(url)  # parses the URL
            errors.append(f"{info.hostname}:{info.port}: {type(exc).__name__}: {exc}")
            continue
        _suspects.clear(url)
        conn.node_url = url
        return conn
    raise ConnectionError("no broker node answered: " + "; ".join(errors))


def connect(amqp_uri: str, *, heartbeat: int | None = None, connect_timeout: float = 5.0) -> amqp.Connection:
    """A py-amqp connection to the first node of ``amqp_uri`` that answers (kombu parses each
    URL). The connection's ``node_url`` names the node; ``node_lost(conn)`` when it fails.

    With ``heartbeat`` (seconds, default ``BROKER_HEARTBEAT``) the owner must call
    ``conn.heartbeat_tick()`` about once a second: that sends our heartbeats and raises once the
    node has said nothing for two intervals (a node frozen or cut off, whose socket stays open)."""
    heartbeat = heartbeat_seconds() if heartbeat is None else heartbeat

    def open_one(url: str) -> amqp.Connection:
        info = kombu.Connection(url)  # parses the URL
        conn = amqp.Connection(
            host=f"{info.hostname or '127.0.0.1'}:{info.port or 5672}",
            userid=info.userid or "guest",
            password=info.password or "guest",
            virtual_host=info.virtual_host or "/",
            heartbeat=heartbeat,
            connect_timeout=connect_timeout,
        )
        try:
            conn.connect()
        except BaseException:
            try:
                conn.collect()
            except Exception:  # nothing was opened
                pass
            raise
        return conn

    return _first_answering(amqp_uri, open_one)


def node_connection(amqp_uri: str, *, heartbeat: int | None = None, connect_timeout: float = 5.0, transport_options: dict | None = None) -> kombu.Connection:
    """A kombu connection, made now, to the first node of ``amqp_uri`` that answers: one node, no
    failover (its owner makes a new connection when the node goes). ``node_url`` names the node.
    With heartbeats (``heartbeat``, default ``BROKER_HEARTBEAT``), its owner calls
    ``keep_alive(conn.connection)`` about once a second while nothing else reads it."""
    heartbeat = heartbeat_seconds() if heartbeat is None else heartbeat

    def open_one(url: str) -> kombu.Connection:
        conn = kombu.Connection(url, heartbeat=heartbeat, connect_timeout=connect_timeout, transport_options=transport_options)
        try:
            conn.ensure_connection(max_retries=0)  # one attempt: the next node is the retry
        except BaseException:
            conn.release()
            raise
        return conn

    return _first_answering(amqp_uri, open_one)


def fail_over_quickly() -> None:
    """Process-wide changes to nameko and kombu, made once by every process at its start, so that
    a node that stops answering without closing its connections (frozen, or cut off the network:
    its sockets stay open) is left within seconds, not when it comes back:

    - every publish nameko makes (RPC requests, RPC replies) waits at most ``CONFIRM_SECONDS`` for
      the broker's confirm (nameko waits for ever, and its publishing connections, kombu's pool,
      have no heartbeats); past that kombu takes the next node and publishes again (at least
      once, as everywhere here: a request whose caller gave up is dropped by ``DeadlineRpc``, a
      reply is matched by its id);
    - a publisher that must connect anew tries the nodes in turn for up to ``FAILOVER_SECONDS``
      (kombu gives all of them together one connect timeout: a first node that does not answer
      used up the time, the publish failed, and a reply that cannot be sent kills nameko's
      container);
    - a consumer connection whose node missed two heartbeats is closed on our side at once
      (kombu's consumer loop would cancel its consumers and close its channel politely first,
      waiting for answers that never come);
    - nameko's consumers reconnect through ``ordered_uri``: the node that failed them is tried
      last, not first (a frozen node accepts the TCP connection and keeps the handshake waiting
      its whole connect timeout);
    - a connection that fails over to the next node drops the one it leaves without a word
      (kombu closes it politely first, channel then connection, each waiting for an answer with no
      time limit: a service's publisher that gave up on a frozen node's confirm waited there until
      the node came back, holding the replies to every RPC it had been asked), and that node is
      tried last for a while."""
    from kombu import Connection
    from nameko.amqp.publish import Publisher
    from nameko.constants import AMQP_URI_CONFIG_KEY
    from nameko.messaging import QueueConsumer

    if getattr(Publisher.publish, "fails_over", False):
        return
    nameko_publish = Publisher.publish
    kombu_heartbeat_check = Connection.heartbeat_check
    kombu_switch = Connection.switch

    def publish(self, payload, **kwargs):
        kwargs.setdefault("confirm_timeout", CONFIRM_SECONDS)
        return nameko_publish(self, payload, **kwargs)

    def heartbeat_check(self, rate=2):
        try:
            return kombu_heartbeat_check(self, rate)
        except Exception:
            node_lost(self)
            self.collect()
            raise

    def switch(self, conn_str):
        if self._connection is not None:
            node_lost(self)
        self.collect()
        return kombu_switch(self, conn_str)

    publish.fails_over = True
    Connection.switch = switch
    Publisher.publish = publish
    Publisher.transport_options["connect_retries_timeout"] = FAILOVER_SECONDS
    Connection.heartbeat_check = heartbeat_check
    QueueConsumer.amqp_uri = property(lambda self: ordered_uri(self.container.config[AMQP_URI_CONFIG_KEY]))


# a look that never waits: eventlet's green select would hand every look to its hub first (the
# gateway looks at a pooled proxy each time it lends one)
_poll = original("select").select


def keep_alive(conn: amqp.Connection) -> None:
    """For a connection that only publishes (nothing drains it): read whatever the node sent
    (its heartbeats, or its closing the connection) without waiting, and tick our heartbeats.
    Raises once the node is gone or silent for two heartbeat intervals."""
    waiting = getattr(conn.transport, "_read_buffer", b"") or _poll([conn.transport.sock], [], [], 0)[0]
    if waiting:
        try:
            # never a sub-millisecond timeout: py-amqp can lose a frame cut by one
            conn.drain_events(timeout=0.01)
        except socket.timeout:
            pass
    conn.heartbeat_tick()
