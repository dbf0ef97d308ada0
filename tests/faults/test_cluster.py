"""The platform on a three-node RabbitMQ cluster with quorum queues loses, doubles and fakes
nothing when a node goes, and answers normally again within a bound.

A private cluster (``testsupport.cluster``: own node names, ports, data folders and Erlang
cookie) and a private PostgreSQL run the whole of ``make dev`` (``python -m deploy.dev``) with
``BROKER_QUEUE_TYPE=quorum`` and ``AMQP_URI`` listing the three nodes. Mixed traffic
(``testsupport.traffic``: flattrs, deposits, budget changes, claims) runs throughout. Then:

- the node leading the most of the busiest queues is killed (SIGKILL: a crash), the traffic goes
  on, and the node is started again and rejoins;
- (``make test-cluster``) the node most clients are connected to is frozen (SIGSTOP) for longer
  than the cluster takes to call it down, then resumed (and restarted, as an operator would, if
  the cluster reports a partition: a frozen node never saw the others go); and, on a cluster
  whose nodes live in network namespaces of their own (``ip netns``, a veth pair each on one
  bridge), the node leading the busiest queues is cut off the network and reconnected.

Each case checks: every durable queue is a quorum queue with a member on every node; every 2xx
was carried out exactly once, nothing was stored that nobody asked for, no event was lost (the
outboxes are empty, every replica equals its source, public counts equal the stored clicks) and
the ledger balances; every failed answer was a 503 with Retry-After, within the deadline; and
normal answers resumed within ``CRASH_BOUND`` (a crash) or ``SILENT_BOUND`` (a freeze, a cut)
seconds of the fault, and stayed normal when the node came back. The figures are printed (``-s``)
and asserted.

``make test`` runs the short variant (the crash only, with 6 s of traffic before it, 10 s
without the node and 4 s after its return, one click worker, six readers); ``make test-cluster`` (``CLUSTER_TEST=full``) runs
every case, each with 20 s before, 40 s without the node and 20 s after.
"""
import os
import time
import uuid

import pytest

from services.common import topology
from services.gateway.rpc import ServiceUnavailable
from testsupport import devstack, instances
from testsupport.cluster import NamespacedRabbitCluster, RabbitCluster, namespaces_work
from testsupport.traffic import MixedTraffic

FULL = os.environ.get("CLUSTER_TEST", "").lower() == "full"
DEADLINE = 10.0  # the platform's default REQUEST_DEADLINE
# seconds from a fault to the last answer that was not a normal one (measured: see the README).
# A crash closes every connection to the node at once: only requests in flight fail, within a
# deadline. A node frozen or cut off says nothing: it takes two heartbeats (BROKER_HEARTBEAT, 5 s)
# or a publish's confirm timeout and a connect timeout (5 s each) to leave it, and requests
# begun meanwhile end at their deadline (10 s).
CRASH_BOUND = 15.0
SILENT_BOUND = 30.0
BEFORE, AFTER, BACK = (20.0, 40.0, 20.0) if FULL else (6.0, 10.0, 4.0)
# the cluster calls a silent node down after about this long (RabbitMQ's default is 60)
NET_TICKTIME = 10
# the queues carrying the most traffic, busiest first: the crash takes the node leading most of them
BUSIEST = (
    "clicks.requests",
    "rpc-accounts",
    "rpc-settlement",
    "evt-clicks-things.counted--accounts.on_things_counted",
    "evt-accounts-budget.changed--settlement.on_budget_changed",
    "evt-settlement-means.changed--clicks.on_means_changed",
)

pytestmark = pytest.mark.slow
full_only = pytest.mark.skipif(not FULL, reason="make test-cluster (CLUSTER_TEST=full)")


@pytest.fixture(scope="module")
def postgres_server(_private_postgres_server):
    """The module's private PostgreSQL (tests/faults/conftest.py)."""
    return _private_postgres_server


@pytest.fixture(scope="module")
def loopback_cluster(request, tmp_path_factory):
    """The module's cluster on this machine's loopback (PostgreSQL starts while its nodes boot)."""
    rabbits = RabbitCluster(size=3, net_ticktime=NET_TICKTIME)
    try:
        began = time.monotonic()
        rabbits.launch()
        request.getfixturevalue("postgres_server")
        rabbits.wait_started()
        print(f"\ncluster of 3 nodes and PostgreSQL up in {time.monotonic() - began:.1f} s")
        yield rabbits
    finally:
        rabbits.save_logs(str(tmp_path_factory.mktemp("rabbitmq-logs")))
        rabbits.cleanup()


@pytest.fixture
def cluster(request, tmp_path):
    """The module's cluster; or, for a test parametrized with ``"namespaces"``, a cluster of its
    own whose nodes live in network namespaces (so that one can be cut off)."""
    if getattr(request, "param", None) != "namespaces":
        yield request.getfixturevalue("loopback_cluster")
        return
    if not namespaces_work():
        pytest.skip("network namespaces need root and ip netns")
    rabbits = NamespacedRabbitCluster(size=3, net_ticktime=NET_TICKTIME)
    try:
        began = time.monotonic()
        rabbits.start()
        print(f"\ncluster of 3 nodes in network namespaces up in {time.monotonic() - began:.1f} s")
        yield rabbits
    finally:
        rabbits.save_logs(str(tmp_path / "rabbitmq-logs"))
        rabbits.cleanup()


@pytest.fixture
def vhost(cluster):
    """A virtual host of the test's own on the cluster, and the platform's AMQP_URI for it."""
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    cluster.start_stopped()
    cluster.ctl("add_vhost", name)
    cluster.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name, ";".join(f"{node.amqp_uri}{name}" for node in cluster.nodes)
    if isinstance(cluster, NamespacedRabbitCluster):
        # the test's own cluster, removed with it: deleting the vhost first is wasted time (after a
        # heal without a restart, RabbitMQ 3.10 took 5 s per quorum queue, over ctl's minute)
        return
    for node in cluster.nodes:
        node.thaw()
    cluster.start_stopped()
    cluster.ctl("delete_vhost", name)


@pytest.fixture
def platform(vhost, postgres_server, tmp_path):
    name, amqp_uri = vhost
    if not postgres_server.running:
        postgres_server.start()
    database = postgres_server.create_database()
    port = instances.free_port()
    admin_token = f"admin-{uuid.uuid4().hex}"
    env = dict(
        os.environ,
        AMQP_URI=amqp_uri,
        BROKER_QUEUE_TYPE="quorum",
        ACCOUNTS_DATABASE_URL=database,
        CLICKS_DATABASE_URL=database,
        SETTLEMENT_DATABASE_URL=database,
        GATEWAY_PORT=str(port),
        FLATTR_ADMIN_TOKEN=admin_token,
        FLATTR_RATE_LIMITS="off",
        CLAIM_ALLOW_PRIVATE_ADDRESSES="on",
        REQUEST_DEADLINE=str(DEADLINE),
        RPC_TIMEOUT=str(DEADLINE),
        CLICK_TIMEOUT=str(DEADLINE),
        CLAIM_FETCH_TIMEOUT="2",
        CLICK_WORKERS="2" if FULL else "1",
        CLICK_WORKER_HEARTBEAT=str(tmp_path / "click-worker.heartbeat"),
        PYTHONWARNINGS="ignore",
    )
    log = tmp_path / "dev.log"
    process = devstack.start(env, log)
    base = f"http://127.0.0.1:{port}"
    dsn = database.replace("postgresql+psycopg2://", "postgresql://")
    try:
        devstack.wait_ready(process, base, log, timeout=120)
        yield {"base": base, "admin_token": admin_token, "dsn": dsn, "vhost": name, "log": log}
    finally:
        devstack.kill_group(process)


def durable_queues(cluster, vhost: str) -> list[dict]:
    """Every queue that must outlive a node: events, RPC requests, the services' RPC replies (not
    the gateway's standalone proxies'), click requests and dead letters."""
    return [
        q for q in cluster.queues(vhost)
        if q["name"].startswith(("evt-", "rpc-", "clicks.")) or (q["name"].startswith("rpc.reply-") and "standalone_rpc_proxy" not in q["name"])
    ]


def assert_quorum_everywhere(cluster, vhost: str) -> None:
    queues = durable_queues(cluster, vhost)
    names = {q["name"] for q in queues}
    assert {"clicks.requests", "clicks.dead", "rpc-accounts", "rpc-clicks", "rpc-settlement", "rpc-payouts", "rpc-settlement_batch"} <= names
    assert {topology.handler_queue(*subscription).name for subscription in topology.SUBSCRIPTIONS} <= names
    assert any(n.startswith("rpc.reply-settlement_batch-") for n in names)
    everyone = {node.nodename for node in cluster.nodes}
    for queue in queues:
        assert queue["type"] == "quorum", queue
        assert set(queue["members"]) == everyone, queue


def leader_of_the_busiest(cluster, vhost: str) -> str:
    """The node leading the most of the ``BUSIEST`` queues (among equals, the busiest one's);
    printed with where the connections and the quorum leaders are."""
    queues = cluster.queues(vhost)
    leaders = {q["name"]: q["leader"] for q in queues}
    counts = {}
    for rank, name in enumerate(BUSIEST):
        counts.setdefault(leaders[name], []).append(rank)
    led = {node.nodename: sum(1 for q in queues if q["leader"] == node.nodename) for node in cluster.nodes}
    print(f"\nconnections {cluster.connections_by_node(vhost)}, quorum leaders {led}")
    return max(counts, key=lambda node: (len(counts[node]), -min(counts[node])))


def drive(platform) -> MixedTraffic:
    traffic = MixedTraffic(platform["base"], platform["admin_token"], platform["dsn"], DEADLINE, clients=4)
    readers = 12 if FULL else 6
    traffic.setup(readers=readers, things=3 if FULL else 2, unowned=8 if FULL else 4)
    print(f"\n{readers} readers and {sum(len(r.things) for r in traffic.readers) + len(traffic.unowned)} things set up in {traffic.setup_seconds:.1f} s")
    traffic.start()
    return traffic


def settle_and_check(traffic: MixedTraffic, cluster, vhost: str, fault_at: float, back_at: float, end: float, label: str, bound: float) -> None:
    recovery = traffic.recovery(fault_at, back_at)
    after_return = traffic.recovery(back_at, end + 60)
    during = traffic.answers(fault_at, back_at)
    failures, figures = traffic.check(converge_seconds=30)
    print(
        f"\n{label}: normal answers {recovery:.1f} s after the fault (bound {bound:g} s); "
        f"answers while the node was away {dict(sorted(during.items()))}; after it came back: "
        f"{'all normal' if not after_return else f'last disrupted answer {after_return:.1f} s after'}\n"
        + "\n".join(f"  {name}: {text}" for name, text in figures.items())
    )
    assert_quorum_everywhere(cluster, vhost)
    assert not failures, "\n".join(failures[:40])
    assert recovery <= bound, f"answers were disrupted for {recovery:.1f} s after the fault"
    assert after_return <= bound, f"answers were disrupted for {after_return:.1f} s after the node came back"
    assert traffic.answers(back_at, end)["200"] > 0, "no flattr succeeded after the node came back"


def test_a_crashed_node_costs_a_few_503s_and_nothing_else(cluster, vhost, platform):
    name = platform["vhost"]
    assert_quorum_everywhere(cluster, name)
    traffic = drive(platform)
    try:
        time.sleep(BEFORE)
        victim = cluster.node_named(leader_of_the_busiest(cluster, name))
        fault_at = time.time()
        victim.kill()
        time.sleep(AFTER)
        back_at = time.time()
        victim.start()
        cluster.wait_clustered()
        time.sleep(BACK)
    finally:
        traffic.stop()
    settle_and_check(traffic, cluster, name, fault_at, back_at, time.time(), f"crash of {victim.nodename}", CRASH_BOUND)


@full_only
def test_a_frozen_node_costs_a_few_503s_and_nothing_else(cluster, vhost, platform):
    name = platform["vhost"]
    traffic = drive(platform)
    try:
        time.sleep(BEFORE)
        # the node most clients are connected to: theirs is the harder part of a freeze
        connections = cluster.connections_by_node(name)
        victim = cluster.node_named(max(connections, key=connections.get))
        print(f"\nconnections {connections}, quorum leaders {cluster.leaders_by_node(name)}")
        fault_at = time.time()
        victim.freeze()
        time.sleep(AFTER)
        back_at = time.time()
        victim.thaw()
        # the others had called it down; it had not noticed, and the cluster is partitioned
        restarted = cluster.heal(victim)
        time.sleep(BACK)
    finally:
        traffic.stop()
    settle_and_check(traffic, cluster, name, fault_at, back_at, time.time(),
                     f"SIGSTOP of {victim.nodename} for {AFTER:g} s{', restarted to heal the partition' if restarted else ''}", SILENT_BOUND)


@full_only
@pytest.mark.parametrize("cluster", ["namespaces"], indirect=True)
def test_a_node_cut_off_the_network_costs_a_few_503s_and_nothing_else(cluster, vhost, platform):
    name = platform["vhost"]
    assert_quorum_everywhere(cluster, name)
    traffic = drive(platform)
    try:
        time.sleep(BEFORE)
        victim = cluster.node_named(leader_of_the_busiest(cluster, name))
        fault_at = time.time()
        cluster.cut(victim)
        time.sleep(AFTER)
        back_at = time.time()
        cluster.reconnect(victim)
        # pause_minority: the node stopped serving once it saw itself alone; it rejoins by itself
        restarted = cluster.heal(victim)
        time.sleep(BACK)
    finally:
        traffic.stop()
    settle_and_check(traffic, cluster, name, fault_at, back_at, time.time(),
                     f"{victim.nodename} cut off the network for {AFTER:g} s{', restarted to heal the partition' if restarted else ''}", SILENT_BOUND)


@full_only
@pytest.mark.parametrize("cluster", ["namespaces"], indirect=True)
def test_a_gateway_proxy_left_idle_while_its_node_was_cut_off_is_not_lent_again(cluster, vhost, platform):
    """Two of the gateway's pooled proxies sit idle on one node; the node is cut off. The call that
    finds it out answers 503 at its deadline. Once the node is back and the services answer again,
    the next call is answered: it is not lent the other proxy, stale since the cut. (Seen in the
    cut case: public pages answered 503 after the traffic, once per idle proxy.)"""
    from nameko.standalone.rpc import ClusterRpcProxy

    from services.gateway.rpc import RpcPool

    amqp_uri = vhost[1]
    pool = RpcPool(amqp_uri, size=2, timeout=DEADLINE)
    try:
        with pool._borrow(DEADLINE) as first, pool._borrow(DEADLINE) as second:
            first.accounts.health()
            second.accounts.health()
        hosts = {item.connection.hostname for item in pool._idle}
        assert len(hosts) == 1, hosts  # a process's proxies start at the same node
        victim = next(node for node in cluster.nodes if node.host in hosts)
        cluster.cut(victim)
        with pytest.raises(ServiceUnavailable):
            pool.call("accounts", "health")
        cluster.reconnect(victim)
        restarted = cluster.heal(victim)
        deadline = time.monotonic() + 60
        while True:  # the services are back: a new proxy is answered
            try:
                with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, timeout=3) as fresh:
                    fresh.accounts.health()
                    break
            except Exception:
                assert time.monotonic() < deadline, "accounts did not answer again within 60 s of the heal"
                time.sleep(0.5)
        print(f"\n{victim.nodename} cut off and back{' (restarted)' if restarted else ''}; the pool's next call:")
        assert pool.call("accounts", "health")
    finally:
        pool.close()
