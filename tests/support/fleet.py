"""Several clusters for tests (issue 13): scenario clusters, one real Redis, one Slack stand-in,
and each cluster's agent replicas as `python -m bot serve` runs them (HTTP `/slack/events`) or
as `python -m bot socket` runs them (`Fleet.socket_replica`: a connection of its own to the one
Slack app's Socket Mode stand-in, `Fleet.socket_mode`, which delivers to the connection a test
names, as Slack picks one at random).

Every agent reads its settings from the environment, as in production: `Fleet.replica` sets
the variables only while it builds the agent (settings are read once, at build). Each test's
agents keep their keys under a root of their own (`<root>:<cluster>:…`, and the fleet's
`<root>-fleet:…`: bot/store.py `Store.fleet`), so no other test's heartbeat or stream reaches
them, and they clean up their own keys.

`fleet(workdir, redis_url)` runs the same agents on another Redis, e.g. a Redis Cluster
(`redis+cluster://…`: tests/support/redis_cluster.py); `fleet_key` / `cluster_key` name keys
as the agents' own stores do (hash-tagged there), and `redis` is a client of the same kind.

Presence: the agents beat (bot/routines/presence.py); `Fleet.beat` writes the same hash with a
chosen age, for tests of a silent or a long-gone cluster.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.app import Runtime, build_bolt_app, build_runtime
from bot.config import Settings, load_settings
from bot.kube.client import KubeClient
from bot.server import HttpServer, make_http_server, make_ops_server, socket_mode_handler
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.sim.socket_mode import SocketModeStandIn, new_app_token
from bot.slack.socket_mode import SocketModeHandler
from bot.store import RedisStore
from tests.support.redis import REDIS_URL
from tests.support.slack_requests import ALERTS, SIGNING_SECRET, SlackClientForTests, environment


@dataclass
class Replica:
    """One agent replica: its runtime, its HTTP server, a signed-request client to it. A
    Socket Mode replica's server has the ops endpoints only; its `handler` holds its
    connection to the Socket Mode stand-in (`connection`: the stand-in's id for it)."""

    cluster: str
    runtime: Runtime
    server: HttpServer
    thread: threading.Thread
    client: SlackClientForTests
    stopped: bool = False
    handler: SocketModeHandler | None = None
    connection: int | None = None

    def stop(self) -> None:
        """The replica goes away (its consumer leaves whatever it had read pending)."""
        if self.stopped:
            return
        self.stopped = True
        if self.handler is not None:
            self.handler.close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.runtime.stop()


class Fleet:
    """The agents of several clusters on one Redis and one Slack stand-in."""

    def __init__(self, slack: SlackStandIn, workdir: Path, socket_mode: SocketModeStandIn,
                 redis_url: str = REDIS_URL) -> None:
        self.slack = slack
        self.socket_mode = socket_mode
        self.workdir = workdir
        self.redis_url = redis_url
        self.replicas: list[Replica] = []
        self.clusters: set[str] = set()
        self.root = f"t-{uuid.uuid4().hex[:8]}"
        #: names keys as the agents' stores do (`Store.key`: hash-tagged on a Redis Cluster)
        self.keys = RedisStore(redis_url, f"{self.root}:-")
        self.redis = self.keys.client

    def fleet_key(self, *parts: str) -> str:
        """A key every cluster of this test shares (`Store.fleet().key(...)`)."""
        return self.keys.fleet().key(*parts)

    def cluster_key(self, cluster: str, *parts: str) -> str:
        """A key of `cluster`'s own (`Store.of_cluster(cluster).key(...)`)."""
        return self.keys.of_cluster(cluster).key(*parts)

    def name(self, base: str) -> str:
        name = f"{base}-{uuid.uuid4().hex[:6]}"
        self.clusters.add(name)
        return name

    def _runtime(self, cluster: str, sim: SimCluster, env: dict[str, str]
                 ) -> tuple[Settings, Runtime]:
        kubeconfig = sim.write_kubeconfig(self.workdir / f"{cluster}.kubeconfig")
        values = {"KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": self.slack.token,
                  "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": self.slack.api_url,
                  "SLACK_ALERT_CHANNEL": f"#{ALERTS[1]}", "CLUSTER_NAME": cluster,
                  "REDIS_URL": self.redis_url, "GROUP_WAIT_SECONDS": "1",
                  "GROUP_INTERVAL_SECONDS": "2", "SWEEP_INTERVAL_SECONDS": "1",
                  "REGISTRY_PROBE": "false", **env}
        with environment(values):
            settings = load_settings()
        runtime = build_runtime(settings, kube=KubeClient.from_environment(str(kubeconfig)),
                                store=RedisStore(self.redis_url, f"{self.root}:{cluster}"))
        for watcher in runtime.watchers:
            watcher.idle_timeout = 0.5
        return settings, runtime

    def _serve(self, cluster: str, server: HttpServer) -> threading.Thread:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"http-{cluster}", daemon=True)
        thread.start()
        return thread

    def replica(self, cluster: str, sim: SimCluster, *, start: bool = True,
                **env: str) -> Replica:
        """An agent replica as `serve` runs it: Slack's requests reach it over HTTP."""
        settings, runtime = self._runtime(cluster, sim, env)
        server = make_http_server(build_bolt_app(settings, runtime), runtime, "127.0.0.1", 0)
        thread = self._serve(cluster, server)
        if start:
            runtime.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        replica = Replica(cluster, runtime, server, thread,
                          SlackClientForTests(url, SIGNING_SECRET))
        self.replicas.append(replica)
        return replica

    def socket_replica(self, cluster: str, sim: SimCluster, **env: str) -> Replica:
        """An agent replica as `socket` runs it (SLACK_APP_TOKEN; SLACK_SIGNING_SECRET as every
        agent of the app has it unless `env` empties it): its own connection to the app's
        Socket Mode stand-in, the ops endpoints on their own port."""
        settings, runtime = self._runtime(
            cluster, sim, {"SLACK_APP_TOKEN": self.socket_mode.app_token, **env})
        bolt = build_bolt_app(settings, runtime)
        server = make_ops_server(runtime, "127.0.0.1", 0)
        thread = self._serve(cluster, server)
        handler = socket_mode_handler(bolt, runtime, self.socket_mode.app_token)
        runtime.start()
        opened = len(self.socket_mode.connections)
        handler.client.connect_to_new_endpoint()
        connection = self.socket_mode.wait_connections(opened + 1)[opened]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        replica = Replica(cluster, runtime, server, thread,
                          SlackClientForTests(url, SIGNING_SECRET), handler=handler,
                          connection=connection.id)
        self.replicas.append(replica)
        return replica

    def beat(self, cluster: str, ago: float = 0.0) -> None:
        """The presence hash M2's heartbeat writes; `ago`: as if the last beat was then."""
        key = self.fleet_key("presence", cluster)
        self.redis.hset(key, mapping={"heartbeat_at": repr(time.time() - ago),
                                      "version": "test", "last_watch_event_at": "",
                                      "open_incidents": "0", "replicas": "2"})
        self.redis.expire(key, 3600)
        # the fleet's list of clusters, scored by the last beat, as the heartbeat keeps it
        self.redis.zadd(self.fleet_key("clusters"), {cluster: time.time() - ago})

    def close(self) -> None:
        """Stop every replica at once (each waits up to a second for its consumer's blocking
        read and its watches: one after another, that was most of a fleet test's time)."""
        stopping = [threading.Thread(target=replica.stop, name=f"stop-{replica.cluster}")
                    for replica in self.replicas]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join(15)
        keys = [*self.redis.scan_iter(f"{self.root}:*"),
                *self.redis.scan_iter(self.fleet_key("*"))]
        if keys:
            self.redis.delete(*keys)
        self.redis.close()


@contextmanager
def fleet(workdir: Path, redis_url: str = REDIS_URL) -> Iterator[Fleet]:
    with SlackStandIn() as slack, SocketModeStandIn(slack, new_app_token()) as socket_mode:
        running = Fleet(slack, workdir, socket_mode, redis_url)
        try:
            yield running
        finally:
            running.close()
