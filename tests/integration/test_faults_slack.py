"""Fault suite, Slack side: a slow Slack, 429/5xx bursts, a lost store write, a SIGKILLed replica.

Every test runs the real pipeline (scenario cluster → watch → diagnosis → incidents in real
Redis → slack_sdk → Slack stand-in) and checks the three promises under the fault: zero lost
incidents (the alert and its resolution arrive), zero duplicate roots or thread replies, and
recovery without help. The stand-in's `set_latency` stores a message at once and answers late,
and `fail_next(..., effect=True)` stores it and then answers 5xx: both are "Slack has it, the
bot was not told", the case that used to double-post.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.alerts.incidents import IncidentManager, Timing
from bot.app import Runtime, build_runtime
from bot.config import load_settings
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.kube.client import KubeClient
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import Message, SlackStandIn
from bot.slack.notifier import SlackNotifier, web_client
from bot.store import RedisStore, StoreUnavailable
from tests.support.private_redis import PrivateRedis
from tests.support.redis import REDIS_URL, redis_store
from tests.support.waiting import wait_for
from tests.unit.diagnosis.kubelet import NOW, pod, pull_failure

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(60)]

ROOT = Path(__file__).parents[2]
CHANNEL = "imagepull-alerts"


# -- what the channel shows ---------------------------------------------------------------------
def roots(slack: SlackStandIn) -> list[Message]:
    return slack.channel_history(CHANNEL)


def replies(slack: SlackStandIn) -> list[Message]:
    return [r for m in roots(slack) for r in m.replies]


def assert_no_duplicate_replies(slack: SlackStandIn) -> None:
    texts = Counter((r.thread_ts, r.text) for r in replies(slack))
    assert all(n == 1 for n in texts.values()), texts


def resolved(slack: SlackStandIn) -> list[Message]:
    return [r for r in replies(slack) if "Resolved after" in r.text]


def wait_in_channel(slack: SlackStandIn, condition: Any, timeout: float, what: str) -> None:
    """wait_for, failing with what the channel shows (duplicates are the usual reason)."""
    try:
        wait_for(condition, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the channel has {len(roots(slack))} roots and "
                             f"{len(replies(slack))} replies") from None


# -- the in-process bot (a and b) ---------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": "test-signing-secret", "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": f"#{CHANNEL}", "CLUSTER_NAME": "faults",
            "GROUP_WAIT_SECONDS": "1", "GROUP_INTERVAL_SECONDS": "2",
            "SWEEP_INTERVAL_SECONDS": "1", "REGISTRY_PROBE": "false",
        }.items():
            monkeypatch.setenv(name, value)
        yield {"sim": sim, "slack": slack, "store": store, "kubeconfig": kubeconfig}


def start_bot(env: dict[str, Any], slack_timeout: float = 10.0) -> Runtime:
    slack: SlackStandIn = env["slack"]
    settings = load_settings()
    runtime = build_runtime(settings, kube=KubeClient.from_environment(str(env["kubeconfig"])),
                            store=env["store"],
                            slack=web_client(slack.token, slack.api_url, timeout=slack_timeout))
    for watcher in runtime.watchers:
        watcher.idle_timeout = 0.5
    runtime.start()
    return runtime


def bad_tag(name: str, replicas: int = 1) -> list[dict[str, Any]]:
    image = f"registry.internal/shop/{name}:v3"
    return factory.failing_deployment("shop", name, image,
                                      factory.containerd_error("not_found", image),
                                      replicas=replicas)


def apply(sim: SimCluster, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        sim.apply(obj)


def recover(sim: SimCluster, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] == "Pod":
            pod_obj, events = factory.recovered(obj)
            apply(sim, [pod_obj, *events])


def test_slow_slack_answering_after_the_client_timeout_posts_root_and_replies_once(
        env: dict[str, Any]) -> None:
    """(a) Slack stores every chat.postMessage at once and answers after 3 s; the client gives
    up after 2 s. The bot must find its own messages instead of posting them again."""
    sim, slack = env["sim"], env["slack"]
    slack.set_latency("chat.postMessage", 3.0)
    bot = start_bot(env, slack_timeout=2.0)
    try:
        apply(sim, bad_tag("web"))
        wait_in_channel(slack, lambda: roots(slack), 20, "the root message")
        apply(sim, bad_tag("web", replicas=2))  # a second pod joins: one thread update
        wait_in_channel(slack, lambda: any("2 pods" in r.text for r in replies(slack)), 25,
                        "the thread update")
        recover(sim, bad_tag("web", replicas=2))
        wait_in_channel(slack, lambda: resolved(slack), 25, "the resolution")
        time.sleep(4)  # longer than one slow post: a duplicate would land now
        assert len(roots(slack)) == 1, [m.text for m in roots(slack)]
        assert_no_duplicate_replies(slack)
        assert len(resolved(slack)) == 1
        assert bot.manager.active_ids() == set()  # nothing lost, nothing left pending
    finally:
        bot.stop()


def test_429_and_5xx_bursts_deliver_each_message_once_after_the_wait(
        env: dict[str, Any]) -> None:
    """(b) Two 429s (Retry-After 1 s), two 500s before Slack stored anything, then a 503 that
    Slack answered after storing the message; the same for the thread update."""
    sim, slack = env["sim"], env["slack"]

    def burst() -> None:
        slack.fail_next("chat.postMessage", status=429, retry_after=1, count=2)
        slack.fail_next("chat.postMessage", status=500, count=2)
        slack.fail_next("chat.postMessage", status=503, count=1, effect=True)

    burst()
    bot = start_bot(env)
    try:
        apply(sim, bad_tag("api"))
        wait_in_channel(slack, lambda: roots(slack), 20, "the root message")
        first = min(c.at for c in slack.calls_to("chat.postMessage"))
        original = roots(slack)[0].original
        assert original is not None and original.at - first >= 2.0  # waited out Retry-After
        burst()
        apply(sim, bad_tag("api", replicas=2))
        wait_in_channel(slack, lambda: any("2 pods" in r.text for r in replies(slack)), 25,
                        "the thread update")
        recover(sim, bad_tag("api", replicas=2))
        wait_in_channel(slack, lambda: resolved(slack), 20, "the resolution")
        time.sleep(2)
        assert len(roots(slack)) == 1, [m.text for m in roots(slack)]
        assert_no_duplicate_replies(slack)
        assert bot.manager.active_ids() == set()
    finally:
        bot.stop()


# -- a store write lost right after the post (defect 4) --------------------------------------------
def test_root_posted_but_not_recorded_is_found_not_posted_again(tmp_path: Path) -> None:
    """Redis stops taking writes while chat.postMessage is in flight: the post succeeds, the
    bot cannot record it, its claim expires. The next tick (here a second replica) must adopt
    the message Slack already shows, not post a second root."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        with SlackStandIn() as slack:
            store = RedisStore(server.url, prefix="d4", socket_timeout=0.3)
            timing = Timing(group_wait=10, group_interval=60, repeat_interval=3600,
                            claim_ttl=1.0)

            def bot() -> IncidentManager:
                notifier = SlackNotifier(web_client(slack.token, slack.api_url), CHANNEL,
                                         store, min_interval=0.01)
                return IncidentManager(store, notifier, cluster="prod", timing=timing)

            name = "web-7d9f8b6c5d-00000"
            image = "web:lates"
            error = ('rpc error: code = NotFound desc = failed to pull and unpack image '
                     '"docker.io/library/web:lates": not found')
            result = diagnose(PodFacts(
                pod=pod(image, name=name, container="web",
                        owner=("ReplicaSet", "web-7d9f8b6c5d")),
                events=pull_failure(image, error, pod_name=name, container="web"), now=NOW))
            first = bot()
            first.observe(result, now=NOW.timestamp())
            slack.set_latency("chat.postMessage", 1.0)

            def cut_redis_once_posted() -> None:
                wait_for(lambda: roots(slack), 10, "the post to reach Slack")
                server.pause_writes(3.0)

            cutter = threading.Thread(target=cut_redis_once_posted)
            cutter.start()
            with pytest.raises(StoreUnavailable):
                first.tick(now=NOW.timestamp() + 11)
            cutter.join()
            assert len(roots(slack)) == 1
            slack.clear_latency()
            second = bot()  # another replica (or the same one, later)
            wait_for(lambda: second.store.ping() and _writable(server), 10, "writes back")
            time.sleep(timing.claim_ttl)  # the first replica's claim runs out
            second.tick(now=NOW.timestamp() + 12)
            second.tick(now=NOW.timestamp() + 13)
            assert len(roots(slack)) == 1, [m.text for m in roots(slack)]
            [incident_id] = second.active_ids()
            incident = second.load(incident_id)
            assert incident is not None and incident.state == "open"
            assert incident.thread_ts == roots(slack)[0].ts
    finally:
        server.stop()


def _writable(server: PrivateRedis) -> bool:
    try:
        return bool(redis.Redis.from_url(server.url, socket_timeout=0.2).set("probe", "1"))
    except redis.RedisError:
        return False


# -- a replica SIGKILLed while its post is in flight (c) -----------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m bot serve` as the Procfile runs it, on its own port."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"],
            env={**env, "PORT": str(free_port())}, cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT)


def recorded_thread(cluster: str) -> str | None:
    """The thread_ts the store holds for the (only) incident of `cluster`, if open."""
    store = RedisStore(REDIS_URL, prefix=f"ipb:{cluster}")
    for incident_id in store.smembers(store.key("incidents", "active")):
        fields = store.hgetall(store.key("incident", incident_id))
        if fields.get("state") == "open":
            return fields.get("thread_ts") or None
    return None


@pytest.mark.parametrize("pods_recover", ["after the takeover", "before the takeover"])
def test_replica_killed_between_claim_and_record_is_recovered_by_the_next(
        tmp_path: Path, pods_recover: str) -> None:
    """(c) Replica A claims the incident and posts the root; Slack stores it but answers late;
    A is SIGKILLed before it can record the post. Replica B, started afterwards, must take
    over by itself once A's claim expires: one root, and the resolution in its thread. When
    the pods recover before B takes over, the incident must not be discarded as "never
    posted": the root is in the channel and needs its resolution."""
    cluster = f"faults-{uuid.uuid4().hex[:8]}"
    objects = bad_tag("web")
    log = tmp_path / "bot.log"
    with SimCluster() as sim, SlackStandIn() as slack:
        env = {**os.environ, "KUBECONFIG": str(sim.write_kubeconfig(tmp_path / "kc")),
               "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": "secret",
               "SLACK_API_URL": slack.api_url, "SLACK_ALERT_CHANNEL": f"#{CHANNEL}",
               "REDIS_URL": REDIS_URL, "CLUSTER_NAME": cluster, "GROUP_WAIT_SECONDS": "1",
               "GROUP_INTERVAL_SECONDS": "2", "SWEEP_INTERVAL_SECONDS": "1",
               "CLAIM_TTL_SECONDS": "4", "REGISTRY_PROBE": "false", "LOG_LEVEL": "WARNING"}
        slack.set_latency("chat.postMessage", 8.0)  # stored at once, answered in 8 s
        a = serve(env, log)
        b: subprocess.Popen[bytes] | None = None
        try:
            apply(sim, objects)
            wait_for(lambda: roots(slack), timeout=30, what="replica A's root reaching Slack")
            a.send_signal(signal.SIGKILL)  # between "Slack stored it" and "A recorded it"
            a.wait(5)
            slack.clear_latency()
            if pods_recover == "before the takeover":
                recover(sim, objects)
            b = serve(env, log)
            if pods_recover == "after the takeover":
                [root] = roots(slack)
                wait_in_channel(slack, lambda: recorded_thread(cluster) == root.ts, 20,
                                "replica B adopting the root Slack already has")
                recover(sim, objects)
            try:
                wait_for(lambda: resolved(slack), timeout=30,
                         what="replica B resolving the incident in the thread")
            except AssertionError as exc:
                calls = [(c.method, c.status, c.error) for c in slack.calls]
                raise AssertionError(f"{exc}\ncalls: {calls}\n"
                                     f"{log.read_text(errors='replace')[-4000:]}") from None
            time.sleep(2)
            [root] = roots(slack)
            [resolution] = resolved(slack)
            assert resolution.thread_ts == root.ts
            assert root.edited and root.text.startswith("Resolved:")
        finally:
            for process in (a, b):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(15)
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"ipb:{cluster}:*"))
            if keys:
                client.delete(*keys)
            client.close()
        output = log.read_text(errors="replace")
        assert "Traceback" not in output, output
