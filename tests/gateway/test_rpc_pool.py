"""The gateway's pool of RPC proxies lends only proxies whose broker connection is alive, and keeps
idle ones alive: a request is never failed by a connection that broke while nobody used it."""
import time
from urllib.parse import quote

import pytest
import requests

from services.accounts.service import AccountsService
from services.gateway.rpc import RpcPool


def _broker_connections(vhost) -> dict[int, str]:
    """The names of the vhost's connections by their client-side port (the management API lists a
    new connection within its statistics interval)."""
    response = requests.get(f"{vhost.api}/connections", timeout=10)
    response.raise_for_status()
    return {c["peer_port"]: c["name"] for c in response.json()}


def _close_from_the_broker(vhost, port: int) -> None:
    """The broker closes the connection whose client side is ``port``, as a node that goes away does."""
    ends = time.monotonic() + 30
    while port not in (names := _broker_connections(vhost)):
        assert time.monotonic() < ends, "the broker never listed the proxy's connection"
        time.sleep(0.5)
    base = vhost.api.rsplit("/vhosts/", 1)[0]
    requests.delete(f"{base}/connections/{quote(names[port], safe='')}", headers={"X-Reason": "test: a node went away"}, timeout=10).raise_for_status()


@pytest.fixture
def pool(amqp_uri, start_services):
    start_services(AccountsService)
    pool = RpcPool(amqp_uri, size=2, timeout=10)
    yield pool
    pool.close()


def test_a_proxy_whose_connection_the_broker_closed_while_it_was_idle_is_not_lent(pool, vhost):
    with pool._borrow(10) as first, pool._borrow(10) as second:
        assert first.accounts.health() and second.accounts.health()
    idle = list(pool._idle)
    _close_from_the_broker(vhost, idle[-1].connection.connection.sock.getsockname()[1])
    _close_from_the_broker(vhost, idle[0].connection.connection.sock.getsockname()[1])
    # both proxies are stale: the calls are answered by new ones, not failed with a 503
    assert pool.call("accounts", "health")
    assert pool.call("accounts", "health")
    assert not set(idle) & set(pool._idle)


def test_idle_proxies_keep_their_connections_past_the_heartbeat_timeout(pool, monkeypatch):
    monkeypatch.setenv("BROKER_HEARTBEAT", "1")  # the broker closes a connection silent for about 2 s
    assert pool.call("accounts", "health")
    proxy = pool._idle[-1]
    time.sleep(4)
    assert pool.call("accounts", "health")
    assert list(pool._idle) == [proxy], "the idle proxy was replaced: its heartbeats were not kept"
