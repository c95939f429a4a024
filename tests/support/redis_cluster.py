"""A real Redis Cluster on loopback for tests: three `redis-server --cluster-enabled yes`
primaries (no replicas) joined by `redis-cli --cluster create`, once per test session.

Each node has its cluster bus on a port of its own (`--cluster-port`: by default port + 10000,
which may be taken). The servers keep nothing on disk (`--save ''`, no AOF; a replica added by
`add_replica` syncs at once, without the default 5 s diskless-sync delay) and are stopped at the
end of the session. Without `redis-server` / `redis-cli` the tests that need the cluster are
skipped, saying so (CI installs redis-server, which brings redis-cli).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import redis.cluster

from bot.store import RedisStore

NODES = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node(server: str, port: int, bus: int, node_dir: Path) -> subprocess.Popen[bytes]:
    """One cluster-enabled redis-server keeping nothing on disk."""
    return subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(node_dir / "nodes.conf"), "--cluster-port", str(bus),
         "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
         "--dir", str(node_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _knows_replica(node_port: int, replica_port: int, primary_id: str) -> bool:
    nodes = redis.Redis(port=node_port, decode_responses=True).execute_command(
        "CLUSTER", "NODES")
    return any(f":{replica_port}@" in line and "slave" in line and primary_id in line
               for line in str(nodes).splitlines())


@dataclass
class RedisClusterForTests:
    """Three primaries covering the 16384 slots; `url` is the bot's `redis+cluster://` URL."""

    workdir: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+cluster://{seeds}"

    def start(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            pytest.skip("redis-server / redis-cli are not installed (apt-get install "
                        "redis-server): the Redis Cluster tests need a real cluster")
        for n in range(NODES):
            port, bus = _free_port(), _free_port()
            node_dir = self.workdir / f"node{n}"
            node_dir.mkdir(parents=True)
            self.procs.append(_node(server, port, bus, node_dir))
            self.ports.append(port)
        for port in self.ports:
            self._wait(lambda p=port: redis.Redis(port=p).ping(), "node to start")  # type: ignore[misc]
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        for port in self.ports:
            self._wait(lambda p=port: b"cluster_state:ok" in  # type: ignore[misc]
                       redis.Redis(port=p).execute_command("CLUSTER", "INFO"),
                       "cluster_state:ok")

    @staticmethod
    def _wait(ready: object, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():  # type: ignore[operator]
                    return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the test Redis Cluster did not come up: waiting for {what}")
            time.sleep(0.05)

    def add_replica(self, primary_port: int) -> int:
        """One more node, a replica of the primary on `primary_port` (in sync when this
        returns); its port. It is stopped with the others."""
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert server is not None and cli is not None
        port, bus = _free_port(), _free_port()
        node_dir = self.workdir / f"node{len(self.procs)}"
        node_dir.mkdir(parents=True)
        self.procs.append(_node(server, port, bus, node_dir))
        self._wait(lambda: redis.Redis(port=port).ping(), "the replica to start")
        primary_id = redis.Redis(port=primary_port, decode_responses=True).execute_command(
            "CLUSTER", "MYID")
        subprocess.run([cli, "--cluster", "add-node", f"127.0.0.1:{port}",
                        f"127.0.0.1:{primary_port}", "--cluster-slave",
                        "--cluster-master-id", primary_id],
                       check=True, capture_output=True, timeout=30)
        self._wait(lambda: redis.Redis(port=port, decode_responses=True).info(
            "replication").get("master_link_status") == "up", "the replica to sync")
        # a failover needs the votes of the other primaries: each must know the replica first
        for other in self.ports:
            self._wait(lambda o=other: _knows_replica(o, port, primary_id),  # type: ignore[misc]
                       "every node to know the replica")
        self.ports.append(port)
        return port

    def client(self) -> redis.cluster.RedisCluster:
        """A plain redis-py cluster client (to look at what the bot wrote, and where)."""
        return redis.cluster.RedisCluster(host="127.0.0.1", port=self.ports[0],
                                          decode_responses=True)

    def node_of(self, key: str) -> str:
        """`host:port` of the primary that holds `key`."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)
            return f"{node.host}:{node.port}"
        finally:
            client.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


@contextmanager
def running_cluster(workdir: Path) -> Iterator[RedisClusterForTests]:
    cluster = RedisClusterForTests(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def cluster_store(cluster: RedisClusterForTests, prefix: str | None = None
                  ) -> Iterator[RedisStore]:
    """A RedisStore on the cluster under a unique prefix; its keys (and its fleet's) are
    deleted afterwards, found by SCAN on every primary."""
    store = RedisStore(cluster.url, prefix or f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield store
    finally:
        client = cluster.client()
        keys = [*client.scan_iter(store.key("*")), *client.scan_iter(store.fleet().key("*"))]
        if keys:
            client.delete(*keys)
        client.close()
