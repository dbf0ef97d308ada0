"""The broker topology declared at start-up (``services.common.topology``) is the one the services'
entrypoints consume from.

An event published before its subscriber's queue exists is dropped, so every service declares
every subscriber's queue (``topology.SUBSCRIPTIONS``) before anything publishes. These tests find
every nameko service class under ``services/`` and check that the list names each of their event
handlers, no more and no fewer, and that each handler and RPC entrypoint declares exactly the
queue (name, binding, arguments) the topology declares for it, for both queue types: a queue
declared twice with different arguments is refused by the broker.
"""
import importlib
import inspect
import pkgutil

import pytest
from nameko.containers import ServiceContainer
from nameko.events import EventHandler
from nameko.rpc import Rpc

import services
from services.common import topology
from services.common.events import durable_event_handler
from services.common.rpc import DeadlineRpc

# service classes that the platform does not run, which declare their own queues when started
NOT_RUN_BY_THE_PLATFORM = {"payout_notifier": "an example subscriber for teams to copy (services/common/contracts)"}


def service_classes() -> dict[str, type]:
    found = {}
    for module_info in pkgutil.walk_packages(services.__path__, "services."):
        if module_info.name.rsplit(".", 1)[-1] == "__main__" or module_info.name.startswith("services.gateway"):
            continue  # starts a process when imported; the gateway is a Flask app (its wsgi module builds one), not a nameko service
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not isinstance(getattr(cls, "name", None), str):
                continue
            if any(getattr(member, "nameko_entrypoints", None) for _, member in inspect.getmembers(cls)):
                found[cls.name] = cls
    return found


def entrypoints(cls, queue_type: str, monkeypatch):
    """The entrypoints of ``cls`` bound to a container (not started: nothing touches a broker),
    set up as a service would set them up with ``BROKER_QUEUE_TYPE=queue_type``."""
    monkeypatch.setenv("BROKER_QUEUE_TYPE", queue_type)
    container = ServiceContainer(cls, {"AMQP_URI": "amqp://nobody@127.0.0.1:1//", "BROKER_QUEUE_TYPE": queue_type})
    for entrypoint in container.entrypoints:
        if isinstance(entrypoint, (EventHandler, Rpc)):
            entrypoint.setup()
        if isinstance(entrypoint, Rpc):
            entrypoint.rpc_consumer.setup()
    return container.entrypoints


def platform_classes():
    return {name: cls for name, cls in service_classes().items() if name not in NOT_RUN_BY_THE_PLATFORM}


def test_the_search_finds_the_platforms_services():
    # a search that found nothing would make the tests below pass vacuously
    assert {"accounts", "clicks", "settlement", "settlement_batch", "payouts"} <= set(platform_classes())


def test_subscriptions_name_every_event_handler_of_every_service(monkeypatch):
    handlers = set()
    for name, cls in platform_classes().items():
        for entrypoint in entrypoints(cls, "classic", monkeypatch):
            if isinstance(entrypoint, EventHandler):
                handlers.add((entrypoint.source_service, entrypoint.event_type, name, entrypoint.method_name))
    declared = set(topology.SUBSCRIPTIONS)
    assert handlers - declared == set(), "event handlers missing from topology.SUBSCRIPTIONS: their events are dropped until they first start"
    assert declared - handlers == set(), "topology.SUBSCRIPTIONS names handlers no service has: their queues would grow for ever"
    assert len(topology.SUBSCRIPTIONS) == len(declared), "a subscription is listed twice"
    assert {source for source, *_ in topology.SUBSCRIPTIONS} <= set(topology.SOURCES)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_each_handler_consumes_the_queue_the_topology_declares(queue_type, monkeypatch):
    for name, cls in service_classes().items():
        for entrypoint in entrypoints(cls, queue_type, monkeypatch):
            if not isinstance(entrypoint, EventHandler):
                continue
            assert isinstance(entrypoint, durable_event_handler()), f"{name}.{entrypoint.method_name} is not a @subscriber or @batch_subscriber"
            declared = topology.handler_queue(entrypoint.source_service, entrypoint.event_type, name, entrypoint.method_name)
            consumed = entrypoint.queue
            assert (consumed.name, consumed.routing_key, consumed.exchange.name, consumed.exchange.type) == (
                declared.name, declared.routing_key, declared.exchange.name, declared.exchange.type,
            )
            assert (consumed.durable, consumed.auto_delete, consumed.exclusive) == (True, False, False)
            assert consumed.queue_arguments == declared.queue_arguments == ({"x-queue-type": "quorum"} if queue_type == "quorum" else {})


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_each_service_takes_its_calls_from_a_queue_of_the_configured_type(queue_type, monkeypatch):
    for name, cls in platform_classes().items():
        rpcs = [e for e in entrypoints(cls, queue_type, monkeypatch) if isinstance(e, Rpc)]
        assert rpcs, f"{name} has no RPC entrypoint (every service answers health)"
        for entrypoint in rpcs:
            assert isinstance(entrypoint, DeadlineRpc), f"{name}.{entrypoint.method_name} is nameko's plain @rpc"
            queue = entrypoint.rpc_consumer.queue
            assert (queue.name, queue.durable) == (f"rpc-{name}", True)
            assert queue.queue_arguments == ({"x-queue-type": "quorum"} if queue_type == "quorum" else {})
