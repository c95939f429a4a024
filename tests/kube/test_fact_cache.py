"""KubeClient remembers what many pods share (bot/kube/cache.py), against the scenario cluster:
owner chains by uid and the server version are read once, secrets, service accounts and nodes
once per freshness window — and a secret created to fix an incident is seen within that window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from bot.diagnosis.causes import Finding
from bot.diagnosis.engine import diagnose
from bot.kube.cache import KubeFactCache, TTLCache
from bot.kube.client import KubeClient, KubeUnreachable
from bot.sim.server import SimCluster
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

FRESH = 0.6  # seconds: short, so the test can watch it expire


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster(["missing-secret"]) as cluster:
        yield cluster


def client_for(sim: SimCluster, tmp_path: Path, fresh: float = FRESH) -> KubeClient:
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(
        tmp_path / "kubeconfig")))
    return KubeClient(api, KubeFactCache(fresh_seconds=fresh))


def reads(sim: SimCluster, path: str) -> int:
    return len(sim.requests_matching("GET", path))


def the_pod(sim: SimCluster) -> str:
    return str(sim.list("Pod", "shop")[0]["metadata"]["name"])


def test_shared_facts_are_read_once_per_window(sim: SimCluster, tmp_path: Path) -> None:
    kube = client_for(sim, tmp_path, fresh=30)
    pod = the_pod(sim)
    first = kube.pod_facts("shop", pod)
    sim.clear_requests()
    for _ in range(5):
        again = kube.pod_facts("shop", pod)
    # per pod: the pod and its events; nothing else is asked again
    paths = sorted({r.path for r in sim.requests})
    assert paths == ["/api/v1/namespaces/shop/events", f"/api/v1/namespaces/shop/pods/{pod}"]
    assert len(sim.requests) == 10
    assert again.workload == first.workload
    assert again.cluster_version == first.cluster_version
    assert again.namespace_pull_secrets == first.namespace_pull_secrets
    assert again.node == first.node and again.node is not None
    assert again.node["status"]["conditions"]  # the slim node keeps what the diagnosis reads


def test_a_secret_created_to_fix_it_is_seen_within_the_window(sim: SimCluster,
                                                              tmp_path: Path) -> None:
    """The pod references `regcred`, which exists only in `default`: the diagnosis says so.
    Someone copies the secret into `shop`: within FRESH seconds the facts the diagnosis gets
    show it (and not before: the window is real, not a no-op). (The kubelet's old events keep
    saying it was missing until the next pull; that is the kubelet's word, not the cache's.)"""
    kube = client_for(sim, tmp_path)
    pod = the_pod(sim)
    before = kube.pod_facts("shop", pod)
    assert before.referenced_secrets == {"regcred": None}
    assert Finding.PULL_SECRET_MISSING in diagnose(before).diagnoses[0].findings

    secret = sim.get("Secret", "regcred", "default")
    copy = {"apiVersion": "v1", "kind": "Secret", "type": secret["type"],
            "data": dict(secret["data"]),
            "metadata": {"name": "regcred", "namespace": "shop"}}
    sim.apply(copy)
    created = time.monotonic()
    assert kube.pod_facts("shop", pod).referenced_secrets == {"regcred": None}  # still cached

    after = wait_for(lambda: (f := kube.pod_facts("shop", pod)).referenced_secrets
                     and f.referenced_secrets.get("regcred") and f, 5, "the new secret")
    assert time.monotonic() - created <= FRESH + 0.5
    info = after.referenced_secrets["regcred"]
    assert info.type == "kubernetes.io/dockerconfigjson" and info.registries
    assert any(s.name == "regcred" for s in after.namespace_pull_secrets)
    # metadata only: nothing of the secret's data is kept by the cache
    kept = repr(kube.facts.namespace_secrets._items) + repr(kube.facts.secrets._items)
    assert secret["data"][".dockerconfigjson"] not in kept


def test_owner_chain_and_version_survive_the_window(sim: SimCluster, tmp_path: Path) -> None:
    kube = client_for(sim, tmp_path, fresh=0.05)
    pod = the_pod(sim)
    kube.pod_facts("shop", pod)
    time.sleep(0.1)
    sim.clear_requests()
    kube.pod_facts("shop", pod)
    assert reads(sim, r"/replicasets/") == 0  # by uid: never changes
    assert reads(sim, r"^/version") == 0  # an hour
    assert reads(sim, r"/secrets$") == 2  # the window passed: listed again (both types)
    assert reads(sim, r"/serviceaccounts/") == 1
    assert reads(sim, r"^/api/v1/nodes/") == 1


def test_a_failed_read_is_not_remembered(sim: SimCluster, tmp_path: Path) -> None:
    kube = client_for(sim, tmp_path)
    pod = the_pod(sim)
    sim.down()
    try:
        with pytest.raises(KubeUnreachable):
            kube.pod_facts("shop", pod)
    finally:
        sim.up()
    facts = kube.pod_facts("shop", pod)
    assert facts.namespace_pull_secrets is not None and facts.node is not None
    assert facts.cluster_version


def test_concurrent_misses_load_once_and_lru_is_bounded() -> None:
    cache: TTLCache[int] = TTLCache(None, 3)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        started.set()
        release.wait(5)
        return 42

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", slow)))
               for _ in range(8)]
    for t in threads:
        t.start()
    assert started.wait(5)
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert results == [42] * 8 and len(calls) == 1

    for key in range(10):
        cache.get_or_load(key, lambda key=key: key)
    assert len(cache) == 3
    assert cache.get_or_load(9, lambda: -1) == 9  # the most recent stay
    assert cache.get_or_load(0, lambda: -1) == -1  # the oldest went


def test_a_failing_leader_lets_a_waiter_load() -> None:
    cache: TTLCache[str] = TTLCache(10, 10)
    started, release = threading.Event(), threading.Event()

    def failing() -> str:
        started.set()
        release.wait(5)
        raise KubeUnreachable("down")

    errors: list[BaseException] = []

    def leader() -> None:
        try:
            cache.get_or_load("k", failing)
        except KubeUnreachable as exc:
            errors.append(exc)

    thread = threading.Thread(target=leader)
    thread.start()
    assert started.wait(5)
    waiter_result: list[str] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(
        cache.get_or_load("k", lambda: "fresh")))
    waiter.start()
    time.sleep(0.05)
    release.set()
    thread.join(5)
    waiter.join(5)
    assert errors and waiter_result == ["fresh"]


def test_a_person_asking_sees_the_secret_at_once(sim: SimCluster, tmp_path: Path) -> None:
    """`/imagepull diagnose`, the CLI and the demo (diagnose_pod without the pipeline's
    sharing) read the namespace-level facts now, whatever the pipeline's window holds."""
    from bot.alerts.investigate import diagnose_pod

    kube = client_for(sim, tmp_path, fresh=300)
    pod = the_pod(sim)
    assert kube.pod_facts("shop", pod).referenced_secrets == {"regcred": None}  # cached 300 s
    secret = sim.get("Secret", "regcred", "default")
    sim.apply({"apiVersion": "v1", "kind": "Secret", "type": secret["type"],
               "data": dict(secret["data"]), "metadata": {"name": "regcred", "namespace": "shop"}})
    sim.clear_requests()
    result = diagnose_pod(kube, "shop", pod, None)
    assert result.diagnoses
    # listed now (both pull-secret types; regcred is in the list, so no GET of it); the owner
    # chain and the version still come from memory
    assert reads(sim, r"^/api/v1/namespaces/shop/secrets$") == 2
    assert reads(sim, r"/serviceaccounts/") == 1 and reads(sim, r"^/api/v1/nodes/") == 1
    assert reads(sim, r"/replicasets/") == 0 and reads(sim, r"^/version") == 0
    # the pipeline's own table is untouched by the one look
    assert kube.pod_facts("shop", pod).referenced_secrets == {"regcred": None}


def test_expired_entries_leave_as_new_ones_come() -> None:
    """A table whose keys are never asked again (a storm's pods come and go) empties as its
    entries expire, not only when `max_entries` pushes the oldest out."""
    now = [0.0]
    cache: TTLCache[int] = TTLCache(10.0, 1_000, clock=lambda: now[0])
    for key in range(100):
        cache.put(key, key)
    now[0] = 11.0
    cache.put("new", 1)
    assert len(cache) == 1
    assert cache.get_or_load("new", lambda: -1) == 1
