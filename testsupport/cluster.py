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

import contextlib
import glob
import json
import os
import shutil
import secrets
import time
import uuid

from testsupport.instances import InstanceError, PrivateRabbit

COOKIE_FILE = ".erlang.cookie"


class ClusterNode(PrivateRabbit):
    kind = "rabbit"

    def __init__(self, nodename: str, cookie: str, net_ticktime: int) -> None:
        super().__init__()
        self.nodename = nodename
        self.cookie = cookie
        self.net_ticktime = net_ticktime
        self.peers: list[str] = []

    frozen = False

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

    def _prepare(self) -> None:
        lines = [
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",
            "log.console = false",
            "log.file.level = info",
            "cluster_partition_handling = pause_minority",
            "cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {peer}" for i, peer in enumerate(self.peers, 1)),
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
        name = uuid.uuid4().hex[:6]
        cookie = secrets.token_hex(20).upper()
        self.nodes = [ClusterNode(f"rabbit-cluster-{name}-{i}@localhost", cookie, net_ticktime) for i in range(1, size + 1)]
        for node in self.nodes:
            node.peers = [n.nodename for n in self.nodes]

    @property
    def amqp_uri(self) -> str:
        return ";".join(node.amqp_uri for node in self.nodes)

    def node_named(self, nodename: str) -> ClusterNode:
        return next(node for node in self.nodes if node.nodename == nodename)

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        """Boot the first node, then the others together (they join it), and wait until every
        node runs in one cluster. (Booting all three at once works too, but waits on peer
        discovery's lock: slower.)"""
        first, *others = self.nodes
        first.start(timeout)
        launched = [(node, node.launch()) for node in others]
        for node, began in launched:
            node.wait_ready(timeout)
            node.start_seconds.append(time.monotonic() - began)
        self.wait_clustered(timeout)
        return self

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
        for node in self.nodes:
            if not node.running:
                node.start(timeout)
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
