"""RPC from the gateway to the services through a pool of standalone nameko proxies.

A standalone proxy is not thread-safe and costs a connection and a reply queue to start, so
each gateway process keeps a small pool: a request borrows one, calls, and gives it back. A proxy
whose connection failed is thrown away and replaced. Domain errors raised by a service arrive as
their own classes (``services.common.errors``); everything that means "the service or the broker
cannot answer" becomes ``ServiceUnavailable`` (HTTP 503).

A call gets the time its request has left (``services.gateway.deadline``), enforced by an
``eventlet.Timeout`` around the whole call: the proxy's own timeout restarts whenever any reply
reaches its queue (late answers to calls it gave up on), so under load it alone may never fire.
The deadline and the request id travel with the call as nameko context data. A proxy that was
interrupted is thrown away without waiting on its connection.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from contextlib import contextmanager

import eventlet
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import broker
from services.common.errors import DomainError
from services.gateway import deadline, metrics

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """The broker or a service did not answer: the request was not carried out (or not known to be)."""


class RpcPool:
    def __init__(self, amqp_uri: str, size: int = 8, timeout: float = 10.0):
        self.amqp_uri = amqp_uri
        self.config = {"AMQP_URI": amqp_uri, "serializer": "json"}
        broker.fail_over_quickly()
        self.size = size
        self.timeout = timeout
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()

    def _new(self):
        context = {}
        # on a cluster, a new proxy goes to a node that has not failed this process lately
        config = dict(self.config, AMQP_URI=broker.ordered_uri(self.amqp_uri))
        runner = ClusterRpcProxy(config, context_data=context, timeout=self.timeout)
        proxy = runner.start()
        proxy.context_data = context  # the dict the proxy's calls send their context from
        return runner, proxy

    @contextmanager
    def _borrow(self, wait: float):
        item = None
        try:
            item = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                may_create = self._created < self.size
                if may_create:
                    self._created += 1
            if may_create:
                try:
                    item = self._new()
                except BaseException:  # an interrupted connect too (the deadline): the slot is free again
                    with self._lock:
                        self._created -= 1
                    raise
            else:
                try:
                    item = self._idle.get(timeout=max(wait, 0.0))
                except queue.Empty:
                    raise ServiceUnavailable("all RPC connections are busy") from None
        healthy = True
        try:
            yield item[1]
        except BaseException as exc:
            healthy = isinstance(exc, (DomainError, RemoteError))
            raise
        finally:
            if healthy:
                self._idle.put(item)
            else:
                self._discard(item)

    def _discard(self, item):
        with self._lock:
            self._created -= 1
        # its broker node may be what failed: tried last by the next proxies for a while
        connection = getattr(getattr(getattr(item[0], "_reply_listener", None), "queue_consumer", None), "connection", None)
        if connection is not None:
            broker.node_lost(connection, self.amqp_uri)
        # closing may wait on a broker that does not answer: never on the caller's time
        eventlet.spawn_n(self._close_quietly, item[0])

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
        while True:
            try:
                item = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(item)


def call(service: str, method: str, *args, **kwargs):
    """``service.method(*args, **kwargs)`` through the app's RPC pool, within the request's deadline:
    how every view talks to the services."""
    from flask import current_app

    return current_app.extensions["rpc"].call(service, method, *args, **kwargs)
