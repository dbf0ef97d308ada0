"""A private three-node RabbitMQ cluster on this machine, for the cluster fault tests.

Each node is a ``PrivateRabbit`` (``testsupport.instances``) of its own: its node name
(``rabbit-cluster-XXXX-N@localhost``), AMQP and Erlang distribution ports, data folder and
``HOME``; the three share one Erlang cookie (written to each ``HOME`` before the first boot) and
find each other from their config files (classic peer discovery). The first node boots alone and
the others join it as they boot. ``cluster_partition_handling = pause_minority``: a node that
finds itself cut off from the others stops serving until it can see a majority again, then
rejoins (what deploy/README.md asks of a production cluster).

``RabbitCluster.amqp_uri`` is the platform's ``AMQP_URI`` for it: the three nodes' URLs
separated by ``;``. The machine's own RabbitMQ (5672, 15672, ``rabbit@localhost``) is never
touched. As with the single private node, everything is removed by ``cleanup()``.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import uuid

from testsupport.instances import RABBITMQ_SBIN, InstanceError, PrivateRabbit

COOKIE_FILE = ".erlang.cookie"


class ClusterNode(PrivateRabbit):
    kind = "rabbit"

    def __init__(self, nodename: str, cookie: str, net_ticktime: int) -> None:
        super().__init__()
        self.nodename = nodename
        self.cookie = cookie
        self.net_ticktime = net_ticktime
        self.peers: list[str] = []

    frozen = False  # SIGSTOPped, or cut off the network: its rabbitmqctl would not answer

    def env(self) -> dict:
        env = super().env()
        # three Erlang VMs share a couple of cores with the platform: no busy-waiting schedulers
        env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] += " +sbwt none +sbwtdcpu none +sbwtdio none"
        return env

    def freeze(self) -> None:
        super().freeze()
        self.frozen = True

    def thaw(self) -> None:
        super().thaw()
        self.frozen = False

    def _extra_config(self) -> list[str]:
        return []

    def _prepare(self) -> None:
        lines = [
            f"listeners.tcp.1 = {self.host}:{self.port}",
            "log.console = false",
            "log.file.level = info",
            "cluster_partition_handling = pause_minority",
            "cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {peer}" for i, peer in enumerate(self.peers, 1)),
            *self._extra_config(),
        ]
        with open(os.path.join(self.base, "rabbitmq.conf"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.join(self.base, "advanced.config"), "w") as fh:
            # how long before the other nodes call a silent node (frozen, cut off) down
            fh.write(f"[{{kernel, [{{net_ticktime, {self.net_ticktime}}}]}}].\n")
        cookie = os.path.join(self.home, COOKIE_FILE)
        if not os.path.exists(cookie):
            with open(cookie, "w") as fh:
                fh.write(self.cookie)
            os.chmod(cookie, 0o400)


class RabbitCluster:
    """Three (``size``) RabbitMQ nodes clustered together; ``nodes[i]`` can be stopped, killed,
    frozen and started again like any ``PrivateRabbit``."""

    def __init__(self, size: int = 3, net_ticktime: int = 60) -> None:
        self.tag = uuid.uuid4().hex[:6]
        cookie = secrets.token_hex(20).upper()
        self.nodes = [self._node(i, cookie, net_ticktime) for i in range(1, size + 1)]
        for node in self.nodes:
            node.peers = [n.nodename for n in self.nodes]

    def _node(self, number: int, cookie: str, net_ticktime: int) -> ClusterNode:
        return ClusterNode(f"rabbit-cluster-{self.tag}-{number}@localhost", cookie, net_ticktime)

    @property
    def amqp_uri(self) -> str:
        return ";".join(node.amqp_uri for node in self.nodes)

    def node_named(self, nodename: str) -> ClusterNode:
        return next(node for node in self.nodes if node.nodename == nodename)

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        """Boot the first node, then the others together (they join it), and wait until every
        node runs in one cluster. (Booting all three at once works too, but waits on peer
        discovery's lock: slower.)"""
        self.launch(timeout)
        self.wait_started(timeout)
        return self

    def launch(self, timeout: float = 120.0) -> None:
        """The first half of ``start``: the first node is up and the others are booting (the
        caller may start something else meanwhile, then ``wait_started``)."""
        first, *others = self.nodes
        first.start(timeout)
        self._launched = [(node, node.launch()) for node in others]

    def wait_started(self, timeout: float = 120.0) -> None:
        for node, began in self._launched:
            node.wait_ready(timeout)
            node.start_seconds.append(time.monotonic() - began)
        self.wait_clustered(timeout)

    def running_nodes(self, asking: ClusterNode | None = None) -> set[str]:
        node = asking or self.any_running()
        status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
        return set(status.get("running_nodes", []))

    def wait_clustered(self, timeout: float = 60.0, expected: set[str] | None = None) -> None:
        expected = expected or {node.nodename for node in self.nodes}
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(InstanceError, ValueError):
                last = self.running_nodes()
                if last == expected:
                    return
            time.sleep(0.5)
        raise InstanceError(f"the cluster did not form: running {last}, expected {expected}")

    def any_running(self) -> ClusterNode:
        for node in self.nodes:
            if node.running and not node.frozen:
                return node
        raise InstanceError("no node of the cluster is running")

    def ctl(self, *args: str, **kwargs) -> str:
        """``rabbitmqctl`` on a running node of the cluster."""
        return self.any_running().ctl(*args, **kwargs)

    def queues(self, vhost: str = "/") -> list[dict]:
        """Every queue of ``vhost``: name, type, leader (quorum) or home node (classic), members,
        messages."""
        out = self.ctl("list_queues", "-p", vhost, "name", "type", "leader", "members", "messages", "--formatter", "json")
        return json.loads(out or "[]")

    def connections_by_node(self, vhost: str = "/") -> dict[str, int]:
        """How many client connections each node holds for ``vhost``."""
        rows = json.loads(self.ctl("list_connections", "port", "vhost", "--formatter", "json") or "[]")
        by_port = {node.port: node.nodename for node in self.nodes}  # each node listens on its own port
        counts = {node.nodename: 0 for node in self.nodes}
        for row in rows:
            if row.get("vhost") == vhost and row.get("port") in by_port:
                counts[by_port[row["port"]]] += 1
        return counts

    def leaders_by_node(self, vhost: str = "/") -> dict[str, int]:
        counts = {node.nodename: 0 for node in self.nodes}
        for queue in self.queues(vhost):
            if queue.get("type") == "quorum" and queue.get("leader") in counts:
                counts[queue["leader"]] += 1
        return counts

    def partitioned(self) -> bool:
        """Whether a running node reports a network partition (nodes that each took the other
        for down, and disagree about what happened meanwhile)."""
        for node in self.nodes:
            if node.running and not node.frozen:
                with contextlib.suppress(InstanceError, ValueError):
                    status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
                    if status.get("partitions"):
                        return True
        return False

    def heal(self, node: ClusterNode, timeout: float = 120.0) -> bool:
        """After ``node`` comes back from a freeze or a cut: if the cluster reports a partition,
        restart ``node`` (what an operator, or the liveness probe of a RabbitMQ pod, does: it
        rejoins the majority with the majority's view); then wait until every node runs in one
        cluster. True if a restart was needed."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.partitioned():
                node.stop()
                node.start(timeout)
                self.wait_clustered(timeout)
                return True
            with contextlib.suppress(InstanceError):
                if self.running_nodes() == {n.nodename for n in self.nodes}:
                    return False
            time.sleep(0.5)
        self.wait_clustered(timeout)
        return False

    def start_stopped(self, timeout: float = 120.0) -> None:
        """Start again every node that is not running (on its data: it rejoins the cluster)."""
        stopped = [node for node in self.nodes if not node.running]
        for node in stopped:
            node.start(timeout)
        if stopped:
            self.wait_clustered(timeout)

    def save_logs(self, folder: str) -> None:
        """Copy every node's logs into ``folder`` (before ``cleanup`` removes them)."""
        os.makedirs(folder, exist_ok=True)
        for node in self.nodes:
            for path in [node.log_path, *glob.glob(os.path.join(node.base, "log", "*.log"))]:
                with contextlib.suppress(OSError):
                    shutil.copy(path, os.path.join(folder, f"{node.nodename.split('@')[0]}-{os.path.basename(path)}"))

    def cleanup(self) -> None:
        """Kill every node (its data is thrown away: no need for a clean stop) and remove the folders."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()
        for node in self.nodes:
            node.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class NamespacedNode(ClusterNode):
    """A cluster node in a network namespace of its own, reached at ``host`` over a bridge, so a
    test can cut it off the network (its link down) and heal it. Node names are long
    (``rabbit-XXXX-N@10.A.B.N``): each namespace has its own loopback, epmd and address."""

    def __init__(self, nodename: str, cookie: str, net_ticktime: int, netns: str, host: str) -> None:
        super().__init__(nodename, cookie, net_ticktime)
        self.netns = netns
        self.host = host

    def env(self) -> dict:
        env = super().env()
        env["RABBITMQ_USE_LONGNAME"] = "true"
        env["ERL_EPMD_ADDRESS"] = f"127.0.0.1,{self.host}"  # the epmd this node starts in its namespace
        return env

    def _extra_config(self) -> list[str]:
        return ["loopback_users = none"]  # clients come from the bridge, not from the node's loopback

    def _command(self):
        argv, kwargs = super()._command()
        return ["ip", "netns", "exec", self.netns, *argv], kwargs

    def _ctl_argv(self, tool: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, os.path.join(RABBITMQ_SBIN, tool), "-n", self.nodename, "--longnames", *args]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise InstanceError(f"ip {' '.join(args)} failed: {result.stderr}")


def namespaces_work() -> bool:
    """Whether this process may make network namespaces (root, ``ip netns``)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = f"flattr-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except InstanceError:
        return False
    _ip("netns", "del", probe)
    return True


class NamespacedRabbitCluster(RabbitCluster):
    """``RabbitCluster`` with each node in a network namespace of its own, all on one bridge
    (``flb<tag>``, 10.A.B.254/24 on this side) through a veth pair each: ``cut(node)`` takes its
    link down, so the node and its clients stop hearing each other without any connection being
    closed; ``reconnect(node)`` brings it back. Everything is removed by ``cleanup``."""

    def __init__(self, size: int = 3, net_ticktime: int = 60) -> None:
        _sweep_stale_networks()
        self.subnet = _free_subnet()
        self.bridge = None
        self._namespaces: list[str] = []
        super().__init__(size, net_ticktime)
        atexit.register(self._remove_network)
        try:
            self.bridge = f"flb{self.tag}"
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for node in self.nodes:
                number = node.host.rsplit(".", 1)[1]
                outside, inside = self._veth(node), f"flp{self.tag}{number}"
                _ip("netns", "add", node.netns)
                self._namespaces.append(node.netns)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", node.netns)
                _ip("link", "set", outside, "master", self.bridge)
                _ip("link", "set", outside, "up")
                _ip("netns", "exec", node.netns, "ip", "addr", "add", f"{node.host}/24", "dev", inside)
                _ip("netns", "exec", node.netns, "ip", "link", "set", inside, "up")
                _ip("netns", "exec", node.netns, "ip", "link", "set", "lo", "up")
        except Exception:
            self.cleanup()
            raise

    def _node(self, number: int, cookie: str, net_ticktime: int) -> ClusterNode:
        host = f"{self.subnet}.{number}"
        return NamespacedNode(f"rabbit-{self.tag}-{number}@{host}", cookie, net_ticktime, f"flattr-{self.tag}-{number}", host)

    def _veth(self, node: NamespacedNode) -> str:
        return f"flv{self.tag}{node.host.rsplit('.', 1)[1]}"

    def cut(self, node: NamespacedNode) -> None:
        _ip("link", "set", self._veth(node), "down")
        node.frozen = True

    def reconnect(self, node: NamespacedNode) -> None:
        _ip("link", "set", self._veth(node), "up")
        node.frozen = False

    def _remove_network(self) -> None:
        for netns in self._namespaces:
            # the node's epmd, and anything else it started, live in the namespace
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        self._namespaces = []
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self.bridge = None

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            self._remove_network()


def _free_subnet() -> str:
    """A 10.A.B.0/24 that no interface of this machine uses."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    rng = secrets.SystemRandom()
    while True:
        subnet = f"10.{rng.randrange(200, 250)}.{rng.randrange(1, 250)}"
        if f" {subnet}." not in taken:
            return subnet


def _sweep_stale_networks() -> None:
    """Remove the namespaces and bridges left by a test process killed before its clean-up: a
    namespace of ours with no process left in it (its node was killed with its test process, see
    ``testsupport.instances.sweep_orphans``), then a bridge of ours with nothing attached."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    for netns in (line.split()[0] for line in listed if line.strip()):
        if re.fullmatch(r"flattr-[0-9a-f]{6}-\d+", netns):
            if not subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.strip():
                subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    for bridge in re.findall(r"^\d+: (flb[0-9a-f]{6}):", links, re.M):
        if not subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout.strip():
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
