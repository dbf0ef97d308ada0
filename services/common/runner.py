"""Start one nameko service as a process: migrate its schema, declare its queues, run until signalled.

Every service's ``__main__`` calls ``main``; it must be imported after ``eventlet.monkey_patch()``.
"""
from __future__ import annotations

import logging
import signal

import eventlet
from nameko.runners import ServiceRunner

from services.common import settings, topology
from services.common.migrate import URL_KEYS, upgrade


def nameko_config(service: str) -> dict:
    config = {
        "AMQP_URI": settings.get("AMQP_URI"),
        "OUTBOX_POLL_SECONDS": settings.get("OUTBOX_POLL_SECONDS"),
        "OUTBOX_RELAY": settings.get("OUTBOX_RELAY"),
        "serializer": "json",
        "max_workers": 20,
    }
    # every declared setting reaches every service: a new setting needs no plumbing here
    for setting in settings.SETTINGS:
        config.setdefault(setting.name, settings.get(setting.name))
    return config


def main(service: str, service_classes: list, schema: str | None = None) -> None:
    """Run ``service_classes`` as process ``service``, migrating ``schema`` (default: ``service``) first."""
    logging.basicConfig(
        level=settings.get("LOG_LEVEL"),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger(service)
    schema = schema or service
    if schema in URL_KEYS:
        upgrade(schema)
        log.info("schema %s migrated", schema)
    config = nameko_config(service)
    topology.declare(config["AMQP_URI"])
    runner = ServiceRunner(config)
    for cls in service_classes:
        runner.add_service(cls)

    stopping = eventlet.event.Event()

    def _stop(signum, frame):
        if not stopping.ready():
            stopping.send(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    log.info("%s running", ", ".join(c.name for c in service_classes))
    stopping.wait()
    log.info("stopping")
    try:
        with eventlet.Timeout(1.0):
            runner.stop()
    except eventlet.Timeout:
        runner.kill()
