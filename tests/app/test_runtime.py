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


# -- the pod view: resolution from the watch, a sweep that reads the view ------------------------
def pod_reads(sim: SimCluster, since: float) -> list[Any]:
    """Every API read of a pod (GET one, or a list without the view's field selector)."""
    return [r for r in sim.requests if r.at >= since and "/pods" in r.path
            and r.param("fieldSelector") != "status.phase=Pending"]


def reads(sim: SimCluster) -> list[Any]:
    """The requests a sweep makes (the watches' own reopens are not the sweep's)."""
    return [r for r in sim.requests if r.param("watch") is None]


def test_a_pod_that_runs_is_resolved_from_the_pod_watch_with_no_sweep(
        env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10: the pods run again (status only, no kubelet event to signal them) and no
    sweep runs for an hour: the roots say resolved within seconds, from the pod watch."""
    monkeypatch.setenv("SWEEP_INTERVAL_SECONDS", "3600")
    sim, slack = env["sim"], env["slack"]
    runtime = start_bot(env)
    try:
        objects = {name: bad_tag(name, replicas=3) for name in ("web", "api")}
        for objs in objects.values():
            apply(sim, objs)
        wait_for(lambda: len(roots(slack)) == 2, what="two root messages")
        wait_for(lambda: runtime.pipeline.drain(0.1), what="the pipeline idle")
        assert runtime.view.current
        attempts = runtime.pipeline.attempts
        started = time.time()
        for objs in objects.values():
            for obj in objs:
                if obj["kind"] == "Pod":
                    apply(sim, [factory.recovered(obj)[0]])
        wait_for(lambda: sum("Resolved after" in c.params["text"]
                             for c in thread_posts(slack)) == 2,
                 timeout=5, what="both resolution replies")
        took = time.time() - started
        assert took < 5, took
        assert runtime.pipeline.attempts == attempts  # no diagnosis resolved them
        assert pod_reads(sim, started) == []  # no sweep, no GET: the watch did it
        wait_for(lambda: all(m.text.startswith("Resolved:") for m in roots(slack)),
                 timeout=5, what="both roots edited to resolved")
    finally:
        runtime.stop()


def test_the_sweep_reads_the_view_and_resolves_what_no_watch_saw(
        env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the view synced, a sweep over 12 failing Pending pods reads nothing from the API;
    a member outside Pending (a running pod whose restarted container cannot pull) is read
    once and tracked, and resolved by the sweep when it is deleted — no event says so."""
    monkeypatch.setenv("SWEEP_INTERVAL_SECONDS", "3600")
    sim, slack = env["sim"], env["slack"]
    runtime = start_bot(env)
    try:
        apply(sim, bad_tag("web", replicas=12))
        image = "registry.internal/shop/job:v3"
        restarted = factory.failing_deployment("shop", "job", image,
                                               factory.containerd_error("not_found", image))
        [pod] = [o for o in restarted if o["kind"] == "Pod"]
        running = factory.recovered(pod)[0]
        running["status"]["containerStatuses"][0]["state"] = pod["status"][
            "containerStatuses"][0]["state"]
        apply(sim, [o for o in restarted if o["kind"] != "Pod"][:2] + [running]
              + [o for o in restarted if o["kind"] == "Event"])
        name = pod["metadata"]["name"]
        wait_for(lambda: len(roots(slack)) == 2, what="two root messages")
        wait_for(lambda: runtime.pipeline.drain(0.1), what="the pipeline idle")
        assert runtime.view.current and runtime.view.get("shop", name) is None

        sim.clear_requests()
        runtime.sweep()
        assert [r.path for r in reads(sim)] == [f"/api/v1/namespaces/shop/pods/{name}"]
        assert runtime.view.get("shop", name) is not None  # tracked
        assert runtime.pipeline.drain(5)

        sim.delete("Pod", name, "shop")
        sim.clear_requests()
        runtime.sweep()
        assert [r.path for r in reads(sim)] == [f"/api/v1/namespaces/shop/pods/{name}"]
        wait_for(lambda: any("Resolved after" in c.params["text"] for c in thread_posts(slack)),
                 timeout=5, what="the deleted pod's incident resolved")
        assert runtime.view.get("shop", name) is None
        wait_for(lambda: any(m.text.startswith("Resolved:") for m in roots(slack)),
                 timeout=5, what="the root edited to resolved")

        sim.clear_requests()
        runtime.sweep()
        assert reads(sim) == []  # 12 Pending members: no API read
    finally:
        runtime.stop()


def test_beyond_view_max_documents_every_pod_is_still_alerted(
        env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """VIEW_MAX_DOCUMENTS reaches the pod view: with room for one document, the other pods of
    a failing Deployment are held without theirs, read by GET when diagnosed, and alerted all
    the same; the gauges at /metrics say so."""
    monkeypatch.setenv("VIEW_MAX_DOCUMENTS", "1")
    sim, slack = env["sim"], env["slack"]
    runtime = start_bot(env)
    try:
        assert runtime.view.max_documents == 1
        started = time.time()
        objects = bad_tag("web", replicas=4)
        apply(sim, objects)
        pods = {f"shop/{o['metadata']['name']}" for o in objects if o["kind"] == "Pod"}
        wait_for(lambda: len(roots(slack)) == 1, what="the root message")
        wait_for(lambda: runtime.pipeline.drain(0.1), what="the pipeline idle")
        [incident_id] = runtime.manager.active_ids()
        incident = runtime.manager.load(incident_id)
        assert incident is not None and incident.pods == pods
        metrics = runtime.metrics.render().decode()
        assert "imagepull_bot_view_documents 1.0" in metrics
        assert "imagepull_bot_view_pods_without_document 3.0" in metrics
        # the three pods beyond the cap were read (GET); the one with its document is read
        # only if its kubelet event reached the bot before the pod watch did (two streams)
        got = {r.path for r in pod_reads(sim, started) if "/pods/" in r.path}
        without = {p for p in pods if runtime.view.get(*p.split("/")).document is None}
        assert len(without) == 3
        assert {f"/api/v1/namespaces/{p.replace('/', '/pods/')}" for p in without} <= got
    finally:
        runtime.stop()
