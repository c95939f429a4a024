"""The nodes' recent pulls (bot/kube/node_pulls.py): remembered from the kubelet's own `Pulled`
events as the event watch lists and watches them, then handed to the diagnosis, where they are
the evidence `proxy_suspected` needs. Against the scenario cluster (real `kubernetes` client)
and real Redis for the watch's position."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose
from bot.kube.client import KubeClient
from bot.kube.node_pulls import NodePulls
from bot.kube.watch import EventWatcher, PodSignal
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.store import RedisStore
from tests.support.redis import redis_store

NOW = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)
FAILING = "docker.io/library/redis:7.2"
ELSEWHERE = "ghcr.io/acme/worker:3.1"


def worker_node(name: str = "worker-1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": factory.uid("Node", name)},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"containerRuntimeVersion": "containerd://1.7.22",
                                    "kubeletVersion": "v1.31.2", "operatingSystem": "linux",
                                    "architecture": "amd64"}}}


def pulled_elsewhere(now: datetime, node: str = "worker-1") -> list[dict[str, Any]]:
    """A pod on `node` whose image from another registry pulled fine: its objects and the
    kubelet's Pulled / Created / Started events."""
    objs = factory.failing_deployment("tools", "worker", ELSEWHERE,
                                      factory.containerd_error("not_found", ELSEWHERE),
                                      node=node, now=now - timedelta(minutes=5))
    pod = next(o for o in objs if o["kind"] == "Pod")
    running, events = factory.recovered(pod, now=now - timedelta(minutes=2))
    return [o for o in objs if o["kind"] != "Pod"] + [running, *events]


def timing_out(now: datetime) -> tuple[str, list[dict[str, Any]]]:
    objs = factory.failing_deployment("shop", "cache", FAILING,
                                      factory.containerd_error("timeout", FAILING), now=now)
    return factory.pod_names("shop", "cache", FAILING)[0], objs


# -- NodePulls by itself, on events shaped as the kubelet writes them -----------------------------


def test_only_successful_pulls_are_remembered_newest_per_registry() -> None:
    now = datetime.now(UTC)
    pulls = NodePulls()
    events = pulled_elsewhere(now)
    pulled = [e for e in events if e["kind"] == "Event" and e["reason"] == "Pulled"]
    assert pulled and all(pulls.record(e) for e in pulled)
    assert not any(pulls.record(e) for e in events if e.get("reason") != "Pulled")
    present = dict(pulled[0], message=f'Container image "{ELSEWHERE}" already present on '
                   "machine")
    assert pulls.record(present) is False  # proves nothing about the way to the registry
    assert pulls.recent("worker-1") is None  # no watch has listed: not known
    pulls.watched = True
    [one] = pulls.recent("worker-1") or ()
    assert (one.image, one.pod) == (ELSEWHERE, f"tools/{pulled[0]['involvedObject']['name']}")
    older = dict(pulled[0], lastTimestamp=factory.rfc3339(now - timedelta(minutes=30)))
    pulls.record(older)  # a relist handing over an older event: the newer one stays
    assert (pulls.recent("worker-1") or ())[0].at == one.at
    assert pulls.recent("worker-2") == ()
    assert pulls.recent("worker-1", now=now + timedelta(hours=2)) == ()  # out of the window


def test_memory_is_bounded_per_node_and_in_nodes() -> None:
    now = datetime.now(UTC)
    pulls = NodePulls(per_node=2, max_nodes=2)
    pulls.watched = True
    template = next(e for e in pulled_elsewhere(now) if e.get("reason") == "Pulled")
    for node in ("n1", "n2", "n3"):
        for host in ("a.example", "b.example", "c.example"):
            pulls.record(dict(template, source={"component": "kubelet", "host": node},
                              message=f'Successfully pulled image "{host}/x:1" in 1s'))
    assert pulls.recent("n1") is not None and pulls.recent("n1") == ()  # evicted
    assert [p.image for p in pulls.recent("n3") or ()] == ["b.example/x:1", "c.example/x:1"]


# -- through the event watch, into the diagnosis ---------------------------------------------------


@pytest.fixture
def store() -> Iterator[RedisStore]:
    with redis_store() as s:
        yield s


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_the_watch_feeds_the_nodes_pulls_to_the_diagnosis(
        sim: SimCluster, kube: KubeClient, store: RedisStore) -> None:
    now = datetime.now(UTC)
    sim.apply(worker_node())
    pod, objs = timing_out(now)
    for obj in [*objs, *pulled_elsewhere(now)]:
        sim.apply(obj)

    # without the watch nothing is known about the node's other pulls: no finding
    d = diagnose(kube.pod_facts("shop", pod)).diagnoses[0]
    assert d.cause is Cause.NETWORK_UNREACHABLE
    assert Finding.PROXY_SUSPECTED not in d.findings

    signals: list[PodSignal] = []
    watcher = EventWatcher(kube, store, signals.append, idle_timeout=0.5)
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while not kube.node_pulls.watched and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kube.node_pulls.watched
        facts = kube.pod_facts("shop", pod)
        assert [p.image for p in facts.node_pulls or ()] == [ELSEWHERE]
        d = diagnose(facts).diagnoses[0]
        assert Finding.PROXY_SUSPECTED in d.findings
        assert any(e.startswith(f"node: the same node pulled {ELSEWHERE} from ghcr.io for pod "
                                "tools/") for e in d.evidence)
        assert d.fixes[0].command == "systemctl show containerd --property=Environment"

        # a pull watched afterwards (not listed) is remembered too: another node's pod
        other = pulled_elsewhere(now, node="worker-2")
        for obj in other:
            sim.apply(obj)
        deadline = time.monotonic() + 10
        while not kube.node_pulls.recent("worker-2") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.image for p in kube.node_pulls.recent("worker-2") or ()] == [ELSEWHERE]
    finally:
        watcher.stop(timeout=5)
