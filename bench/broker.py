"""make bench-broker: what quorum queues cost on one RabbitMQ node, against classic queues.

For each queue type (``BROKER_QUEUE_TYPE``), in a virtual host of its own on the machine's
RabbitMQ (deleted after), a nameko service of the platform's kind (``@rpc``: the RPC request
queue of that type; ``@subscriber``: an event queue of that type) runs in this process, and:

- RPC: ``BENCH_CALLS`` calls one after another through a standalone proxy (as the gateway calls),
  the round trip of each timed;
- events: ``BENCH_EVENTS`` events published one at a time with publisher confirms (as the outbox
  relay publishes), the confirm and the delivery to the handler timed;
- a burst: ``BENCH_BURST`` events published back to back and confirmed, then the time until the
  handler has seen them all (events a second).

The two types run in turns (classic, quorum, classic, quorum...; ``BENCH_ROUNDS``), so a busy
machine weighs on both alike. The last line is ``ratio=`` the quorum RPC round trip's median
over classic's.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import quote  # noqa: E402

import requests  # noqa: E402
from kombu import Connection, Exchange, Producer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import AMQP_BASE, RABBIT_API, say  # noqa: E402
from services.common import topology  # noqa: E402
from services.common.events import envelope, exchange_name, subscriber  # noqa: E402
from services.common.rpc import rpc  # noqa: E402
from services.common.runner import ServiceGroup  # noqa: E402

CALLS = int(os.environ.get("BENCH_CALLS", "500"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "500"))
BURST = int(os.environ.get("BENCH_BURST", "5000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))

_received: dict[str, float] = {}


class EchoService:
    """A service with one RPC and one event handler, declared as the platform's are."""

    name = "bench_echo"

    @rpc
    def echo(self, value):
        return value

    @subscriber("accounts", "budget.changed")
    def on_budget_changed(self, event):
        _received[event["event_id"]] = time.perf_counter()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def one_round(queue_type: str) -> dict[str, float]:
    os.environ["BROKER_QUEUE_TYPE"] = queue_type
    vhost = f"bench-broker-{queue_type}-{uuid.uuid4().hex[:8]}"
    api = f"{RABBIT_API}/vhosts/{quote(vhost, safe='')}"
    requests.put(api, timeout=10).raise_for_status()
    amqp_uri = f"{AMQP_BASE}/{quote(vhost, safe='')}"
    # only this service's queue among the platform's subscriptions
    subscriptions = topology.SUBSCRIPTIONS
    topology.SUBSCRIPTIONS = (("accounts", "budget.changed", EchoService.name, "on_budget_changed"),)
    group = ServiceGroup({"AMQP_URI": amqp_uri, "serializer": "json", "BROKER_QUEUE_TYPE": queue_type})
    try:
        topology.declare(amqp_uri)
        group.add_service(EchoService)
        group.start()
        figures = {}
        with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}) as proxy:
            for _ in range(20):  # warm up
                proxy.bench_echo.echo(1)
            times = []
            for n in range(CALLS):
                began = time.perf_counter()
                assert proxy.bench_echo.echo(n) == n
                times.append(time.perf_counter() - began)
        figures["rpc_p50"], figures["rpc_p99"] = percentile(times, 0.5), percentile(times, 0.99)

        exchange = Exchange(exchange_name("accounts"), type="topic", durable=True, auto_delete=False)
        with Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
            producer = Producer(conn.default_channel, exchange=exchange, serializer="json")
            confirms, deliveries = [], []
            for _ in range(EVENTS):
                body = envelope("budget.changed", {"user_id": 1, "budget": 500})
                began = time.perf_counter()
                producer.publish(body, routing_key="budget.changed", delivery_mode=2)
                confirms.append(time.perf_counter() - began)
                while body["event_id"] not in _received:
                    eventlet.sleep(0.0001)
                deliveries.append(_received[body["event_id"]] - began)
            figures["confirm_p50"], figures["confirm_p99"] = percentile(confirms, 0.5), percentile(confirms, 0.99)
            figures["event_p50"], figures["event_p99"] = percentile(deliveries, 0.5), percentile(deliveries, 0.99)

            bodies = [envelope("budget.changed", {"user_id": 1, "budget": 500}) for _ in range(BURST)]
            began = time.perf_counter()
            for body in bodies:
                producer.publish(body, routing_key="budget.changed", delivery_mode=2)
            confirmed = time.perf_counter() - began
            while not all(b["event_id"] in _received for b in bodies[-50:]) or sum(1 for b in bodies if b["event_id"] in _received) < BURST:
                eventlet.sleep(0.01)
            handled = time.perf_counter() - began
        figures["burst_confirmed_per_s"] = BURST / confirmed
        figures["burst_handled_per_s"] = BURST / handled
        return figures
    finally:
        group.kill()
        topology.SUBSCRIPTIONS = subscriptions
        requests.delete(api, timeout=10)


def main() -> int:
    say(f"bench-broker: {CALLS} RPCs, {EVENTS} events one by one, a burst of {BURST} events; {ROUNDS} rounds of each queue type")
    results: dict[str, list[dict]] = {"classic": [], "quorum": []}
    for round_number in range(ROUNDS):
        for queue_type in ("classic", "quorum"):
            figures = one_round(queue_type)
            results[queue_type].append(figures)
            say(
                f"  round {round_number + 1} {queue_type:7}: RPC p50 {figures['rpc_p50'] * 1000:.2f} ms p99 {figures['rpc_p99'] * 1000:.2f} ms; "
                f"event confirm p50 {figures['confirm_p50'] * 1000:.2f} ms, delivered p50 {figures['event_p50'] * 1000:.2f} ms "
                f"p99 {figures['event_p99'] * 1000:.2f} ms; burst {figures['burst_confirmed_per_s']:.0f}/s confirmed, "
                f"{figures['burst_handled_per_s']:.0f}/s handled"
            )
    medians = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in results.items()}
    for t, m in medians.items():
        say(
            f"{t:7}: RPC {m['rpc_p50'] * 1000:.2f} ms (p99 {m['rpc_p99'] * 1000:.2f}), event confirmed {m['confirm_p50'] * 1000:.2f} ms, "
            f"delivered {m['event_p50'] * 1000:.2f} ms (p99 {m['event_p99'] * 1000:.2f}), burst {m['burst_confirmed_per_s']:.0f}/s confirmed "
            f"{m['burst_handled_per_s']:.0f}/s handled"
        )
    say(f"ratio={medians['quorum']['rpc_p50'] / medians['classic']['rpc_p50']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
