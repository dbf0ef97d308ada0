"""A call whose answer cannot be sent, because the broker went away between the call and its
answer, leaves the service running: its other calls go on, it answers again once a broker is
back, and the call itself is carried out again then (it went back to its queue). nameko ends such a worker with an error, which kills the whole container (every call in
flight with it) and, in a deployment, the process.

RabbitMQ is a private instance (testsupport/instances.py): the machine's own is never disturbed.
"""
from __future__ import annotations

import time

import eventlet
import pytest
from eventlet.event import Event
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import topology
from services.common.rpc import rpc
from services.common.runner import ServiceGroup

pytestmark = pytest.mark.slow

RELEASE = Event()
CARRIED_OUT = []


class ReplyProbe:
    name = "reply_probe"

    @rpc
    def answer_when_released(self):
        RELEASE.wait()
        CARRIED_OUT.append(time.monotonic())
        return "done"

    @rpc
    def ping(self):
        return "pong"


def _call(amqp_uri: str, method: str, timeout: float):
    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, timeout=timeout) as cluster:
            return getattr(cluster.reply_probe, method)()
    except Exception as exc:  # noqa: BLE001 - the broker is away: any failure
        return exc


def _busy(group: ServiceGroup) -> int:
    return sum(len(c._worker_threads) for c in group.containers)


def test_an_answer_the_broker_cannot_take_leaves_the_service_serving(private_rabbit):
    global RELEASE
    RELEASE = Event()
    CARRIED_OUT.clear()
    config = {"AMQP_URI": private_rabbit.amqp_uri, "serializer": "json"}
    topology.declare(config["AMQP_URI"])
    group = ServiceGroup(config)
    group.add_service(ReplyProbe)
    group.start()
    try:
        assert _call(private_rabbit.amqp_uri, "ping", timeout=10) == "pong"
        # the service's queue is on disk before the crash (RabbitMQ writes a declaration lazily)
        private_rabbit.ctl("eval", "mnesia:sync_log().")
        caller = eventlet.spawn(_call, private_rabbit.amqp_uri, "answer_when_released", 5)
        deadline = time.monotonic() + 10
        while _busy(group) == 0:
            assert time.monotonic() < deadline, "the call never reached the service"
            eventlet.sleep(0.05)
        private_rabbit.kill()
        RELEASE.send()  # the work is done now; its answer has no broker to go to
        deadline = time.monotonic() + 60
        while _busy(group):
            assert time.monotonic() < deadline, "the worker never finished"
            eventlet.sleep(0.1)
        assert isinstance(caller.wait(), Exception)  # its caller heard nothing: a 503 at the gateway
        eventlet.sleep(1)  # a container being killed takes a moment to say so
        assert not any(c._being_killed or c._died.ready() for c in group.containers), "the lost answer killed the service's container"
        private_rabbit.start()
        deadline = time.monotonic() + 60
        while (answer := _call(private_rabbit.amqp_uri, "ping", timeout=3)) != "pong":
            assert time.monotonic() < deadline, f"the service did not answer again once the broker was back: {answer!r}"
            eventlet.sleep(0.5)
        while len(CARRIED_OUT) < 2:
            assert time.monotonic() < deadline, "the call whose answer was lost did not come back to the service"
            eventlet.sleep(0.1)
    finally:
        if not RELEASE.ready():
            RELEASE.send()
        if not private_rabbit.running:
            private_rabbit.start()  # for the tests after this one; a container also stops cleanly then
        group.kill()
