"""RPC from the gateway to the services through a pool of standalone nameko proxies.

A standalone proxy is not thread-safe and costs a connection and a reply queue to start, so
each gateway process keeps a small pool: a request borrows one, calls, and gives it back. A proxy
whose connection failed is thrown away and replaced. All of a proxy's traffic goes over one
connection to one broker node, with heartbeats; a keeper thread reads and sends the idle proxies'
heartbeats every second, and a proxy is looked at again as it is lent, so one whose node went away
(crashed, frozen, cut off the network) is replaced before a request is lent it. Domain errors
raised by a service arrive as their own classes (``services.common.errors``); everything that
means "the service or the broker cannot answer" becomes ``ServiceUnavailable`` (HTTP 503).

A call gets the time its request has left (``services.gateway.deadline``), enforced by an
``eventlet.Timeout`` around the whole call: the proxy's own timeout restarts whenever any reply
reaches its queue (late answers to calls it gave up on), so under load it alone may never fire.
The deadline and the request id travel with the call as nameko context data. A proxy that was
interrupted is thrown away without waiting on its connection.
"""
from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from contextlib import contextmanager

import amqp
import eventlet
import kombu
from nameko import serialization
from nameko.amqp.publish import UndeliverableMessage
from nameko.constants import AMQP_URI_CONFIG_KEY, PERSISTENT as PERSISTENT_DELIVERY_MODE
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.rpc import MethodProxy, ServiceProxy
from nameko.standalone.rpc import ClusterProxy, ClusterRpcProxy, PollingQueueConsumer, SingleThreadedReplyListener

from services.common import broker
from services.common.errors import DomainError
from services.gateway import deadline, metrics

log = logging.getLogger(__name__)

# how long a new proxy waits for a node to accept its connection before it tries the next one
CONNECT_SECONDS = 2.0
# how often the idle proxies' heartbeats are sent and read
KEEPER_SECONDS = 1.0


class ServiceUnavailable(Exception):
    """The broker or a service did not answer: the request was not carried out (or not known to be)."""


class _NodeReplyConsumer(PollingQueueConsumer):
    """nameko's polling reply consumer, on a connection of the pool's making: to one node (the
    first, in this process's order, that answers within ``CONNECT_SECONDS``), with heartbeats, and
    carrying the proxy's requests too (``_NodePublisher``). A proxy thus lives on one node: when
    that node goes, the proxy is replaced whole, and an idle one is found out by its heartbeats.

    nameko's own connections list every node and fail over inside a call: its reply consumer
    reconnected to another node (its reply queue had lived on the lost one) and its publisher
    waited for the lost node to close a channel; a proxy left idle while its node was cut off
    looked healthy and failed the next request lent it."""

    publish_channel = None

    def register_provider(self, provider):
        config = provider.container.config
        self.provider = provider
        self.serializer, self.accept = serialization.setup(config)
        self.connection = broker.node_connection(
            config[AMQP_URI_CONFIG_KEY], heartbeat=broker.heartbeat_seconds(), connect_timeout=CONNECT_SECONDS,
            transport_options={"confirm_publish": True},
        )
        self.queue = provider.queue
        self._setup_consumer()
        self.publish_channel = self.connection.channel()
        self.stopped = False

    def get_message(self, correlation_id):
        # a lost connection ends the call and the pool replaces the proxy; nameko would connect
        # again, to the same node, and wait for a reply that went to a queue gone with the old one
        try:
            while correlation_id not in self.replies:
                self.consumer.connection.drain_events(timeout=self.timeout)
        except socket.timeout:
            raise RpcTimeout(self.timeout) from None
        body, message = self.replies.pop(correlation_id)
        self.provider.handle_message(body, message)


class _NodePublisher:
    """Publishes a proxy's requests on its own connection, as nameko's ``Publisher`` would (persistent,
    mandatory, confirmed), without retrying: a request the node did not confirm within
    ``broker.CONFIRM_SECONDS`` is answered 503 and the proxy replaced."""

    def __init__(self, consumer: _NodeReplyConsumer, serializer: str):
        self.consumer = consumer
        self.serializer = serializer

    def publish(self, payload, *, exchange, routing_key, mandatory, reply_to, correlation_id, extra_headers):
        producer = kombu.Producer(self.consumer.publish_channel, exchange=exchange, serializer=self.serializer)
        try:
            producer.publish(
                payload, routing_key=routing_key, mandatory=mandatory, reply_to=reply_to, correlation_id=correlation_id,
                headers=extra_headers, delivery_mode=PERSISTENT_DELIVERY_MODE, retry=False, timeout=broker.CONFIRM_SECONDS,
                confirm_timeout=broker.CONFIRM_SECONDS,
            )
        except amqp.exceptions.ChannelError as exc:
            if "NO_ROUTE" in str(exc):  # no queue bound for the service: nameko's UnknownService
                raise UndeliverableMessage() from None
            raise


class _NodeMethodProxy(MethodProxy):
    def __init__(self, worker_ctx, service_name, method_name, reply_listener, **options):
        super().__init__(worker_ctx, service_name, method_name, reply_listener, **options)
        self.publisher = _NodePublisher(reply_listener.queue_consumer, self.serializer)


class _NodeServiceProxy(ServiceProxy):
    def __getattr__(self, name):
        return _NodeMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener, **self.options)


class _NodeClusterProxy(ClusterProxy):
    def __getattr__(self, name):
        if name not in self._proxies:
            self._proxies[name] = _NodeServiceProxy(self._worker_ctx, name, self._reply_listener)
        return self._proxies[name]


class _NodeReplyListener(SingleThreadedReplyListener):
    def __init__(self, timeout=None):
        super().__init__(timeout=timeout)
        self.queue_consumer = _NodeReplyConsumer(timeout=timeout)


class _NodeRpcProxy(ClusterRpcProxy):
    """nameko's standalone cluster proxy, all of whose traffic goes over one connection to one node."""

    def __init__(self, config, context_data=None, timeout=None):
        super().__init__(config, context_data=context_data, timeout=timeout, reply_listener_cls=_NodeReplyListener)
        self._proxy = _NodeClusterProxy(self._worker_ctx, self._reply_listener)


class _Pooled:
    """A started proxy and what the pool knows of it."""

    __slots__ = ("runner", "proxy")

    def __init__(self, runner, proxy):
        self.runner = runner
        self.proxy = proxy

    @property
    def connection(self):
        return self.runner._reply_listener.queue_consumer.connection

    def alive(self) -> bool:
        """Reads what its node sent meanwhile (heartbeats, a closed connection) without waiting and
        sends our heartbeat when due: False once the node is gone or has said nothing for two
        heartbeat intervals."""
        try:
            broker.keep_alive(self.connection.connection)
            return True
        except Exception:  # whatever the connection raises, it is not one to lend
            return False


class RpcPool:
    def __init__(self, amqp_uri: str, size: int = 8, timeout: float = 10.0):
        self.amqp_uri = amqp_uri
        self.config = {"AMQP_URI": amqp_uri, "serializer": "json"}
        broker.fail_over_quickly()
        self.size = size
        self.timeout = timeout
        self._idle: collections.deque[_Pooled] = collections.deque()  # the most recently returned last
        self._created = 0
        self._changed = threading.Condition()
        self._keeper: threading.Thread | None = None
        self._closed = False

    def _new(self) -> _Pooled:
        context = {}
        # on a cluster, a new proxy goes to a node that has not failed this process lately
        config = dict(self.config, AMQP_URI=broker.ordered_uri(self.amqp_uri))
        runner = _NodeRpcProxy(config, context_data=context, timeout=self.timeout)
        try:
            proxy = runner.start()
        except BaseException:  # connected but interrupted later (its reply queue, the deadline): close it
            eventlet.spawn_n(self._close_quietly, runner)
            raise
        proxy.context_data = context  # the dict the proxy's calls send their context from
        return _Pooled(runner, proxy)

    def _ensure_keeper(self) -> None:
        # started on first use: the gateway's processes fork after the app is made
        if self._keeper is None or not self._keeper.is_alive():
            with self._changed:
                if self._keeper is None or not self._keeper.is_alive():
                    self._keeper = threading.Thread(target=self._keep_idle_alive, name="rpc-pool-keeper", daemon=True)
                    self._keeper.start()

    def _keep_idle_alive(self) -> None:
        """Every second, the idle proxies' heartbeats: ours sent (an idle connection would otherwise
        be closed by its node) and theirs read; a proxy whose node is gone is replaced before a
        request is lent it. The idle ones are taken out while they are checked, so no request
        uses a connection the keeper is reading."""
        while not self._closed:
            time.sleep(KEEPER_SECONDS)
            with self._changed:
                checking = list(self._idle)
                self._idle.clear()
            alive, dead = [], []
            for item in checking:
                (alive if item.alive() else dead).append(item)
            with self._changed:
                self._idle.extendleft(reversed(alive))  # back in the order they were, before any returned meanwhile
                self._changed.notify_all()
            for item in dead:
                self._discard(item)

    def _take(self, wait: float) -> _Pooled | None:
        """An idle proxy, or None when the caller may make one; waits up to ``wait`` for one to be
        returned when the pool is full."""
        ends = time.monotonic() + max(wait, 0.0)
        with self._changed:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._created < self.size:
                    self._created += 1
                    return None
                left = ends - time.monotonic()
                if left <= 0:
                    raise ServiceUnavailable("all RPC connections are busy")
                self._changed.wait(left)

    @contextmanager
    def _borrow(self, wait: float):
        self._ensure_keeper()
        while True:
            item = self._take(wait)
            if item is None:
                try:
                    item = self._new()
                except BaseException:  # an interrupted connect too (the deadline): the slot is free again
                    with self._changed:
                        self._created -= 1
                        self._changed.notify()
                    raise
                break
            if item.alive():
                break
            self._discard(item)  # its node went away since the keeper's last look
        healthy = True
        try:
            yield item.proxy
        except BaseException as exc:
            healthy = isinstance(exc, (DomainError, RemoteError))
            raise
        finally:
            if healthy:
                with self._changed:
                    self._idle.append(item)
                    self._changed.notify()
            else:
                self._discard(item)

    def _discard(self, item: _Pooled) -> None:
        with self._changed:
            self._created -= 1
            self._changed.notify()
        # its broker node may be what failed: tried last by the next proxies for a while
        broker.node_lost(item.connection)
        # closing may wait on a broker that does not answer: never on the caller's time
        eventlet.spawn_n(self._close_quietly, item.runner)

    @staticmethod
    def _close_quietly(runner):
        with eventlet.Timeout(5, False):
            try:
                runner.stop()
            except Exception:  # the connection is already broken; nothing to release
                pass

    def call(self, service: str, method: str, *args, **kwargs):
        started = time.perf_counter()
        outcome = "ok"
        ends_at = deadline.current(self.timeout)
        left = min(deadline.remaining(self.timeout), self.timeout)
        timer = eventlet.Timeout(left) if left > 0 else None
        try:
            if timer is None:
                raise ServiceUnavailable(f"{service}.{method}: no time left before the request's deadline")
            with self._borrow(left) as proxy:
                proxy.context_data.update(deadline=ends_at, request_id=deadline.request_id() or "")
                return getattr(getattr(proxy, service), method)(*args, **kwargs)
        except eventlet.Timeout as exc:
            if exc is not timer:
                raise
            outcome = "unavailable"
            raise ServiceUnavailable(f"{service} did not answer within the request's deadline") from None
        except DomainError:
            outcome = "domain_error"
            raise
        except (RpcTimeout, UnknownService, socket.error, OSError, ConnectionError) as exc:
            outcome = "unavailable"
            raise ServiceUnavailable(f"{service} did not answer: {type(exc).__name__}") from exc
        except RemoteError as exc:
            outcome = "remote_error"
            log.error("%s.%s failed remotely: %s", service, method, exc)
            raise
        except ServiceUnavailable:
            outcome = "unavailable"
            raise
        except Exception as exc:
            # kombu/amqp raise their own hierarchy for a lost broker; none of it is the caller's fault
            if type(exc).__module__.split(".")[0] in ("kombu", "amqp", "nameko"):
                outcome = "unavailable"
                raise ServiceUnavailable(f"broker error: {type(exc).__name__}") from exc
            outcome = "error"
            raise
        finally:
            if timer is not None:
                timer.cancel()
            metrics.RPC_LATENCY.labels(service, method, outcome).observe(time.perf_counter() - started)

    def close(self):
        self._closed = True
        with self._changed:
            idle = list(self._idle)
            self._idle.clear()
        for item in idle:
            self._discard(item)


def call(service: str, method: str, *args, **kwargs):
    """``service.method(*args, **kwargs)`` through the app's RPC pool, within the request's deadline:
    how every view talks to the services."""
    from flask import current_app

    return current_app.extensions["rpc"].call(service, method, *args, **kwargs)
