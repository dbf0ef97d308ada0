"""Start one nameko service as a process: migrate its schema, declare its queues, run until signalled.

Every service's ``__main__`` calls ``main``; it must be imported after ``eventlet.monkey_patch()``.

A nameko container has one worker pool and one consumer channel whose prefetch is that pool's
size, shared by all its entrypoints: a backlog of events would take every worker (and every
prefetched message slot) and leave the service's RPCs waiting behind it. So each service class
runs as two containers in the process (``ServiceGroup``): one for its RPCs, one for its
background work (event handlers and timers), each with its own worker limit (``RPC_WORKERS``,
``EVENT_WORKERS``) and its own broker channel. An entrypoint that names another worker setting
(``worker_setting``, as the accounts service's verification pool does) gets a third container
with that many workers. All have the class's name, so queue names and routing are nameko's usual
ones; the database pool is sized for them all (``services.common.db``).
"""
from __future__ import annotations

import logging
import time

import eventlet
from nameko.containers import ServiceContainer
from nameko.rpc import Rpc
from nameko.utils.concurrency import SpawningSet
from nameko.extensions import iter_extensions

from services.common import broker, logs, settings, shutdown, topology
from services.common.migrate import URL_KEYS, upgrade
from services.common.rpc import service_reply_queues_of_the_configured_type

# in-flight workers get this long to finish on SIGTERM; the process runner waits 3 s in all
STOP_SECONDS = 2.0


def nameko_config(service: str) -> dict:
    config = {
        # the nodes of a cluster in this process's order (it starts at a node of its own)
        "AMQP_URI": broker.ordered_uri(settings.get("AMQP_URI")),
        "OUTBOX_POLL_SECONDS": settings.get("OUTBOX_POLL_SECONDS"),
        "OUTBOX_RELAY": settings.get("OUTBOX_RELAY"),
        "serializer": "json",
        # nameko's consumers notice a broker node that stopped answering by its missing heartbeats
        "HEARTBEAT": broker.heartbeat_seconds(),
    }
    # every declared setting reaches every service: a new setting needs no plumbing here
    for setting in settings.SETTINGS:
        config.setdefault(setting.name, settings.get(setting.name))
    return config


def _worker_setting(entrypoint) -> str:
    """The setting that sizes the worker pool of the container running ``entrypoint``."""
    if isinstance(entrypoint, Rpc):
        return "RPC_WORKERS"
    return getattr(entrypoint, "worker_setting", "EVENT_WORKERS")


class _PartContainer(ServiceContainer):
    """A container running only the entrypoints of ``service_cls`` that ``keep`` selects."""

    def __init__(self, service_cls, config, keep, max_workers: int):
        super().__init__(service_cls, dict(config, max_workers=max_workers))
        self.entrypoints = SpawningSet(e for e in self.entrypoints if keep(e))
        self.subextensions = SpawningSet()
        for extension in self.dependencies | self.entrypoints:
            self.subextensions.update(iter_extensions(extension))


class ServiceGroup:
    """Runs service classes, each split into a container per worker pool (RPCs, background work).
    The same interface as nameko's ``ServiceRunner`` (add_service, start, stop, kill, wait)."""

    def __init__(self, config: dict):
        self.config = config
        self.containers: list[ServiceContainer] = []

    def add_service(self, cls) -> None:
        used = {_worker_setting(e) for e in ServiceContainer(cls, self.config).entrypoints}
        pools = sorted(used, key=lambda pool: (pool != "RPC_WORKERS", pool != "EVENT_WORKERS", pool))  # RPCs start first
        for pool in pools:
            keep = lambda e, pool=pool: _worker_setting(e) == pool  # noqa: E731
            self.containers.append(_PartContainer(cls, self.config, keep, int(settings.setting(self.config, pool))))

    @property
    def service_names(self) -> list[str]:
        return sorted({c.service_name for c in self.containers})

    def start(self) -> None:
        for container in self.containers:
            container.start()

    def stop(self) -> None:
        threads = [eventlet.spawn(c.stop) for c in self.containers]
        for thread in threads:
            thread.wait()

    def kill(self) -> None:
        # each container's kill waits on its own threads and connections: all at once, not in turn
        threads = [eventlet.spawn(c.kill) for c in self.containers]
        for thread in threads:
            thread.wait()

    def wait(self) -> None:
        for container in self.containers:
            container.wait()


def main(service: str, service_classes: list, schema: str | None = None) -> None:
    """Run ``service_classes`` as process ``service``, migrating ``schema`` (default: ``service``) first."""
    logs.configure(service)
    log = logging.getLogger(service)
    schema = schema or service
    if schema in URL_KEYS:
        upgrade(schema)
        log.info("schema %s migrated", schema)
    config = nameko_config(service)
    topology.declare(config["AMQP_URI"], config)
    runner = ServiceGroup(config)
    for cls in service_classes:
        logs.attach(cls)
        runner.add_service(cls)

    shutdown.stop_consumers_promptly()
    service_reply_queues_of_the_configured_type()
    broker.fail_over_quickly()
    signals = shutdown.StopSignals()
    runner.start()
    log.info("%s running", ", ".join(c.name for c in service_classes))

    def watch(container):
        # a container that dies (its broker connection reset under it, its database gone mid-
        # rollback) leaves the process running but deaf: end the process, so the process
        # runner, compose or Kubernetes starts a fresh one
        try:
            container.wait()
        except Exception as exc:
            log.error("%s stopped working (%s: %s); exiting so that it is restarted", container.service_name, type(exc).__name__, exc)
        signals.trip()

    for container in runner.containers:
        eventlet.spawn_n(watch, container)
    if signals.wait() == 0:
        runner.kill()
        shutdown.exit_now(1)
    log.info("stopping")
    started = time.monotonic()
    if not shutdown.stop_within(runner, STOP_SECONDS):
        log.warning("in-flight work did not finish within %.0f s; killed it (its messages go back to the broker)", STOP_SECONDS)
    log.info("stopped in %.2f s", time.monotonic() - started)
    shutdown.exit_now(0)
