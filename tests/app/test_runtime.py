"""The whole bot, as `python -m bot serve` runs it, against stand-ins of everything outside.

Scenario cluster (Kubernetes wire format) → EventWatcher / PodSweeper → Pipeline (real
diagnosis) → IncidentManager (real Redis) → SlackNotifier (real slack_sdk) → Slack stand-in.
Settings come from the environment, as in production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, build_runtime
from bot.config import load_settings
from bot.kube.client import KubeClient
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.redis import redis_store
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]




def roots(slack: SlackStandIn) -> list[Any]:
    return [m for m in slack.channel_history("imagepull-alerts")]


def thread_posts(slack: SlackStandIn) -> list[Any]:
    return [c for c in slack.calls_to("chat.postMessage") if c.ok and c.params.get("thread_ts")]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": "test-signing-secret", "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": "#imagepull-alerts", "CLUSTER_NAME": "test",
            "GROUP_WAIT_SECONDS": "1", "GROUP_INTERVAL_SECONDS": "2",
            "SWEEP_INTERVAL_SECONDS": "1", "REGISTRY_PROBE": "false",
        }.items():
            monkeypatch.setenv(name, value)
        yield {"sim": sim, "slack": slack, "store": store, "kubeconfig": kubeconfig}


def start_bot(env: dict[str, Any]) -> Runtime:
    settings = load_settings()
    runtime = build_runtime(settings, kube=KubeClient.from_environment(str(env["kubeconfig"])),
                            store=env["store"])
    for watcher in runtime.watchers:
        watcher.idle_timeout = 0.5
    runtime.start()
    return runtime


def apply(sim: SimCluster, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        sim.apply(obj)


def outage(name: str, replicas: int) -> list[dict[str, Any]]:
    image = f"docker.io/library/{name}:1.0"
    return factory.failing_deployment("shop", name, image,
                                      factory.containerd_error("rate_limited", image),
                                      replicas=replicas)


def bad_tag(name: str, replicas: int = 1) -> list[dict[str, Any]]:
    image = f"registry.internal/shop/{name}:v3"
    return factory.failing_deployment("shop", name, image,
                                      factory.containerd_error("not_found", image),
                                      replicas=replicas)


@pytest.fixture
def bot(env: dict[str, Any]) -> Iterator[Runtime]:
    runtime = start_bot(env)
    yield runtime
    runtime.stop()


def test_registry_outage_of_50_pods_is_one_alert(env: dict[str, Any], bot: Runtime) -> None:
    sim, slack = env["sim"], env["slack"]
    for i in range(8):
        apply(sim, outage(f"svc{i}", 5))  # 40 pods now
    wait_for(lambda: roots(slack), what="the root message")
    time.sleep(1.5)  # more than group_wait: a late root would show up now
    assert len(roots(slack)) == 1
    for i in range(8, 10):
        apply(sim, outage(f"svc{i}", 5))  # 10 more pods
    wait_for(lambda: any("50 pods" in c.params["text"] for c in thread_posts(slack)),
             what="a thread update reaching 50 pods")
    assert len(roots(slack)) == 1
    updates = sorted(c.at for c in thread_posts(slack))
    gaps = [b - a for a, b in pairwise(updates)]
    assert all(gap >= 1.9 for gap in gaps), gaps  # at most one per group_interval (2 s)
    wait_for(lambda: slack.calls_to("chat.update"), what="the root refreshed (paced 1/s)")
    updates = slack.calls_to("chat.update")
    assert all(c.ok for c in updates), [(c.status, c.error) for c in updates]
    fields = [f["text"] for b in roots(slack)[0].blocks for f in b.get("fields", [])]
    assert "*Workloads*\n10" in fields and "*Registry*\ndocker.io" in fields


def test_bad_tag_on_three_deployments_is_three_alerts_then_resolved(
        env: dict[str, Any], bot: Runtime) -> None:
    sim, slack = env["sim"], env["slack"]
    objects = {name: bad_tag(name) for name in ("web", "api", "worker")}
    for objs in objects.values():
        apply(sim, objs)
    wait_for(lambda: len(roots(slack)) >= 3, what="three root messages")
    time.sleep(1.5)
    assert len(roots(slack)) == 3
    for name in ("web", "api", "worker"):
        [root] = [m for m in roots(slack) if f"deployment/{name} " in str(m.blocks)]
        assert f"kubectl set image deployment/{name} '{name}=registry.internal/shop/{name}:" \
               in str(root.blocks)
    # the fix: web's pods now run
    for obj in objects["web"]:
        if obj["kind"] == "Pod":
            pod, events = factory.recovered(obj)
            apply(sim, [pod, *events])
    wait_for(lambda: any("Resolved after" in c.params["text"] for c in thread_posts(slack)),
             what="the resolution reply")
    [web] = [m for m in roots(slack) if "deployment/web " in str(m.blocks)
             or "Resolved" in m.text]
    wait_for(lambda: web.text.startswith("Resolved:") if web.edited else False, timeout=5,
             what="the root edited to resolved")
    assert sum("Resolved after" in c.params["text"] for c in thread_posts(slack)) == 1


def test_restart_mid_incident_keeps_one_thread(env: dict[str, Any]) -> None:
    sim, slack = env["sim"], env["slack"]
    first = start_bot(env)
    apply(sim, bad_tag("web", replicas=2))
    wait_for(lambda: roots(slack), what="the root message")
    first.stop()
    second = start_bot(env)  # a new process: same Redis, resumes the watch
    try:
        apply(sim, factory.failing_deployment(
            "shop", "web", "registry.internal/shop/web:v3",
            factory.containerd_error("not_found", "registry.internal/shop/web:v3"),
            replicas=3))  # the rollout adds a third pod
        wait_for(lambda: thread_posts(slack), what="the thread update")
        time.sleep(1.5)
        assert len(roots(slack)) == 1
        assert thread_posts(slack)[0].params["thread_ts"] == roots(slack)[0].ts
    finally:
        second.stop()


def test_two_replicas_post_each_incident_once(env: dict[str, Any]) -> None:
    sim, slack = env["sim"], env["slack"]
    replicas = [start_bot(env), start_bot(env)]
    try:
        apply(sim, bad_tag("web"))
        apply(sim, bad_tag("api"))
        for i in range(3):
            apply(sim, outage(f"cache{i}", 2))
        wait_for(lambda: len(roots(slack)) >= 3, what="three root messages")
        time.sleep(2.5)
        assert len(roots(slack)) == 3
    finally:
        for runtime in replicas:
            runtime.stop()


def test_dropped_watch_and_410_lose_nothing_and_post_once(env: dict[str, Any],
                                                          bot: Runtime) -> None:
    sim, slack = env["sim"], env["slack"]
    apply(sim, outage("svc0", 3))
    wait_for(lambda: roots(slack), what="the root message")
    sim.drop_watches(abrupt=True)
    apply(sim, outage("svc1", 3))
    sim.forbid("events", ["watch"])  # hold the reconnect while history is compacted → 410
    apply(sim, outage("svc2", 3))
    sim.compact()
    sim.allow("events")
    apply(sim, outage("svc3", 3))
    wait_for(lambda: any("12 pods" in c.params["text"] for c in thread_posts(slack)),
             timeout=20, what="all 12 pods in the incident")
    assert len(roots(slack)) == 1


def test_crash_loop_produces_no_alert(env: dict[str, Any], bot: Runtime) -> None:
    sim, slack = env["sim"], env["slack"]
    apply(sim, factory.crashloop_deployment("shop", "app", "registry.internal/shop/app:1.4"))
    apply(sim, bad_tag("web"))  # a real failure, to know the bot is alive
    wait_for(lambda: roots(slack), what="the bad-tag alert")
    time.sleep(1.5)
    assert len(roots(slack)) == 1
    assert "deployment/web " in str(roots(slack)[0].blocks)


def test_stale_failures_at_install_do_not_storm_but_current_ones_alert(
        env: dict[str, Any]) -> None:
    sim, slack = env["sim"], env["slack"]
    apply(sim, bad_tag("old"))
    for ev in sim.list("Event", "shop"):
        sim.bump_event("shop", ev["metadata"]["name"], last_timestamp="2026-01-01T00:00:00Z")
    runtime = start_bot(env)
    try:
        # the pod still waits in ImagePullBackOff, so the sweep reports it once, grouped
        wait_for(lambda: roots(slack), what="the sweep's alert")
        time.sleep(1.5)
        assert len(roots(slack)) == 1
    finally:
        runtime.stop()
    assert threading.active_count() < 50
