"""PodView against the scenario cluster (real `kubernetes` client over HTTP): Pending pods by
list+watch, kept slim; recovery from the watch; 410 and dropped watches lose nothing; pods
outside Pending are read once and tracked; the list+watch loop is the shared reflector's."""

from __future__ import annotations

import copy
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bot.kube.client import KubeClient
from bot.kube.reflector import Reflector
from bot.kube.view import PENDING, PodView, SlimPod
from bot.kube.watch import EventWatcher
from bot.sim import factory
from bot.sim.server import SimCluster
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

PODS_PATH = r"^/api/v1/pods$"  # the all-namespaces list/watch


class Recovered:
    """on_recovered that records, thread-safely."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> None:
        with self._lock:
            self.items.append((namespace, name))

    def of(self, name: str) -> int:
        with self._lock:
            return sum(1 for _, n in self.items if n == name)


@pytest.fixture
def view_of(kube: KubeClient) -> Iterator[Any]:
    views: list[PodView] = []

    def make(**kwargs: Any) -> tuple[PodView, Recovered]:
        recovered = Recovered()
        options: dict[str, Any] = {"idle_timeout": 0.5, "backoff_base": 0.05,
                                   "backoff_max": 0.3}
        options.update(kwargs)
        view = PodView(kube, on_recovered=recovered, **options)
        view.start()
        views.append(view)
        assert view.wait_synced(5)
        return view, recovered

    yield make
    for view in views:
        view.stop()


def failing(name: str, replicas: int = 1, ns: str = "shop") -> tuple[list[str], list[Any]]:
    image = f"registry.internal/shop/{name}:v3"
    objs = factory.failing_deployment(ns, name, image,
                                      factory.containerd_error("not_found", image),
                                      replicas=replicas)
    return factory.pod_names(ns, name, image, replicas), objs


def pods_of(objs: list[Any]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "Pod"]


def apply_all(sim: SimCluster, objs: list[Any]) -> None:
    for obj in objs:
        sim.apply(obj)


def run(sim: SimCluster, pod: dict[str, Any]) -> None:
    """The pod after a successful pull: Running, status only (no Pulled events: whatever
    resolves it must have seen the pod, not the kubelet's events)."""
    running, _ = factory.recovered(pod)
    sim.apply(running)


# -- the wire: what a field-selector watch says when a pod leaves Pending -----------------------
def test_a_pod_leaving_pending_is_deleted_from_the_watch_with_its_last_pending_state(
        sim: SimCluster, kube: KubeClient) -> None:
    """As the apiserver's cacheWatcher does: DELETED, the previous (matching) object, the
    resourceVersion of the change. The view relies on it."""
    [name], objs = failing("web")
    apply_all(sim, objs)
    items, rv = kube.list_pods_at("shop", field_selector=PENDING)
    assert [p["metadata"]["name"] for p in items] == [name]
    run(sim, pods_of(objs)[0])
    stream = kube.watch_pods("shop", rv, 5, idle_timeout=0.5, field_selector=PENDING)
    events = [e for e in stream if e["type"] != "BOOKMARK"]
    assert [e["type"] for e in events] == ["DELETED"]
    gone = events[0]["object"]
    assert gone["status"]["phase"] == "Pending"
    assert gone["metadata"]["resourceVersion"] == str(sim.store.rv)
    assert kube.list_pods("shop", field_selector=PENDING) == []
    assert [p["metadata"]["name"] for p in kube.list_pods("shop")] == [name]


# -- the projection ----------------------------------------------------------------------------
def test_the_view_keeps_a_slim_projection_not_the_object(
        sim: SimCluster, view_of: Any) -> None:
    image = "registry.internal/shop/web:v3"
    objs = factory.failing_deployment("shop", "web", image,
                                      factory.containerd_error("not_found", image),
                                      pull_secrets=["regcred"])
    apply_all(sim, objs)
    view, _ = view_of()
    [raw] = pods_of(objs)
    name = raw["metadata"]["name"]
    pod = wait_for(lambda: view.get("shop", name), timeout=5, what="the pod in the view")
    assert isinstance(pod, SlimPod)
    assert not hasattr(pod, "__dict__")  # slots: the fields below and nothing else
    stored = sim.get("Pod", name, "shop")
    assert pod == SlimPod(
        namespace="shop", name=name, uid=stored["metadata"]["uid"],
        resource_version=stored["metadata"]["resourceVersion"], phase="Pending",
        owner=("ReplicaSet", stored["metadata"]["ownerReferences"][0]["name"],
               stored["metadata"]["ownerReferences"][0]["uid"]),
        images=(("web", image),), pull_secrets=("regcred",),
        service_account=stored["spec"].get("serviceAccountName") or "default",
        node="worker-1",
        waiting=(("web", "ImagePullBackOff",
                  stored["status"]["containerStatuses"][0]["state"]["waiting"]["message"]),))
    assert pod.failing
    # what the view holds per pod is a fraction of the object: the fields, and the diagnosis
    # document as compact JSON (bench/view_memory.py measures both with tracemalloc)
    slim = sum(sys.getsizeof(getattr(pod, f)) for f in SlimPod.__slots__ if f != "packed")
    assert slim < len(str(stored)) / 3, (slim, len(str(stored)))
    assert pod.packed is not None and len(pod.packed) < len(json.dumps(stored)) / 2, \
        (len(pod.packed or b""), len(json.dumps(stored)))
    assert [p.key for p in view.failing()] == [("shop", name)]


def test_only_pending_pods_are_held(sim: SimCluster, view_of: Any) -> None:
    apply_all(sim, factory.crashloop_deployment("shop", "app", "registry.internal/shop/app:1"))
    [name], objs = failing("web")
    apply_all(sim, objs)
    view, _ = view_of()
    wait_for(lambda: view.get("shop", name), timeout=5, what="the failing pod")
    assert len(view) == 1  # the crash-looping pod runs: not Pending, not held


# -- resolution from the watch -------------------------------------------------------------------
def test_a_pod_that_runs_or_is_deleted_is_recovered_from_the_watch(
        sim: SimCluster, view_of: Any) -> None:
    names, objs = failing("web", replicas=3)
    apply_all(sim, objs)
    view, recovered = view_of()
    wait_for(lambda: len(view.failing()) == 3, timeout=5, what="three failing pods")
    first, second, third = pods_of(objs)
    run(sim, first)  # Pending → Running: DELETED from the Pending watch
    sim.delete("Pod", second["metadata"]["name"], "shop")
    in_place = copy.deepcopy(sim.get("Pod", third["metadata"]["name"], "shop"))
    in_place["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ContainerCreating"}}  # pulled; still Pending
    sim.apply(in_place)
    wait_for(lambda: all(recovered.of(n) == 1 for n in names), timeout=5,
             what="all three recovered")
    assert view.failing() == []
    assert view.get("shop", names[2]) is not None  # still Pending, no longer failing
    # a pod that never failed a pull is not reported when it starts
    starting = copy.deepcopy(first)
    starting["metadata"]["name"] = "fresh"
    starting["metadata"].pop("uid", None)
    starting["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ContainerCreating"}}
    sim.apply(starting)
    wait_for(lambda: view.get("shop", "fresh"), timeout=5, what="the fresh pod")
    run(sim, sim.get("Pod", "fresh", "shop"))
    wait_for(lambda: view.get("shop", "fresh") is None, timeout=5, what="the fresh pod gone")
    assert recovered.of("fresh") == 0


def test_410_loses_nothing_a_pod_that_recovered_in_the_gap_is_recovered(
        sim: SimCluster, view_of: Any) -> None:
    names, objs = failing("web", replicas=2)
    apply_all(sim, objs)
    view, recovered = view_of()
    wait_for(lambda: len(view.failing()) == 2, timeout=5, what="two failing pods")
    scope = view.scopes[0]
    sim.forbid("pods", ["watch"])  # hold the reconnect while history is compacted
    sim.drop_watches(abrupt=True)
    run(sim, pods_of(objs)[0])  # recovers in the gap
    [late], more = failing("api")
    apply_all(sim, more)  # starts failing in the gap
    sim.compact()
    sim.allow("pods")
    wait_for(lambda: recovered.of(names[0]) == 1, timeout=10, what="the recovery in the gap")
    wait_for(lambda: view.get("shop", late), timeout=5, what="the pod that failed in the gap")
    assert scope.relists == 1
    assert {p.name for p in view.failing()} == {names[1], late}
    assert recovered.of(names[1]) == 0


def test_a_dropped_watch_resumes_from_its_rv_and_loses_nothing(
        sim: SimCluster, view_of: Any) -> None:
    names, objs = failing("web", replicas=2)
    apply_all(sim, objs)
    view, recovered = view_of()
    wait_for(lambda: len(view.failing()) == 2, timeout=5, what="two failing pods")
    lists = len([r for r in sim.requests_matching("GET", PODS_PATH) if r.param("watch") is None])
    sim.forbid("pods", ["watch"])
    sim.drop_watches(abrupt=True)
    run(sim, pods_of(objs)[1])  # recovers while the view is disconnected
    sim.allow("pods")
    wait_for(lambda: recovered.of(names[1]) == 1, timeout=10, what="the recovery in the gap")
    after = [r for r in sim.requests_matching("GET", PODS_PATH)]
    assert len([r for r in after if r.param("watch") is None]) == lists  # no relist
    watches = [r for r in after if r.param("watch") == "True"]
    assert all(r.param("fieldSelector") == PENDING for r in watches)
    assert all(r.param("allowWatchBookmarks") == "True" for r in watches)
    assert watches[-1].param("resourceVersion")  # resumed, not from scratch
    assert [p.name for p in view.failing()] == [names[0]]


# -- pods outside Pending ----------------------------------------------------------------------
def test_a_running_pod_failing_a_pull_is_read_once_and_tracked_until_it_goes(
        sim: SimCluster, kube: KubeClient, view_of: Any) -> None:
    [name], objs = failing("web")
    apply_all(sim, objs)
    pod = pods_of(objs)[0]
    running, _ = factory.recovered(pod)
    running["status"]["containerStatuses"][0]["state"] = copy.deepcopy(
        pod["status"]["containerStatuses"][0]["state"])  # restarted, image gone: still Running
    sim.apply(running)
    view, _ = view_of()
    assert view.get("shop", name) is None  # not Pending: the watch does not see it
    sim.clear_requests()
    tracked = view.refresh("shop", name)
    assert tracked is not None and tracked.failing and tracked.phase == "Running"
    reads = [r.path for r in sim.requests if r.param("watch") is None]  # not the reopens
    assert reads == [f"/api/v1/namespaces/shop/pods/{name}"]
    assert view.get("shop", name) == tracked
    assert [p.key for p in view.failing()] == [("shop", name)]
    sim.delete("Pod", name, "shop")
    assert view.refresh("shop", name) is None
    assert view.get("shop", name) is None and len(view) == 0
    assert view.forget([]) == 0


def test_tracked_pods_are_bounded_and_forgotten_with_their_incident(
        sim: SimCluster, view_of: Any) -> None:
    names, objs = failing("web", replicas=3)
    apply_all(sim, objs)
    for pod in pods_of(objs):
        running, _ = factory.recovered(pod)
        running["status"]["containerStatuses"][0]["state"] = copy.deepcopy(
            pod["status"]["containerStatuses"][0]["state"])
        sim.apply(running)
    view, _ = view_of(tracked_limit=2)
    for name in names:
        view.refresh("shop", name)
    assert len(view) == 2 and view.get("shop", names[0]) is None  # the oldest went
    assert view.forget([("shop", names[2])]) == 1
    assert [p.name for p in view.failing()] == [names[2]]


# -- one reflector for every watch ----------------------------------------------------------------
def test_the_event_watch_and_the_pod_view_share_one_reflector(
        sim: SimCluster, kube: KubeClient, view_of: Any) -> None:
    view, _ = view_of()
    for cls in (EventWatcher, type(view.scopes[0])):
        assert issubclass(cls, Reflector)
        for loop in ("run", "_watch_once", "_relist", "_back_off", "health"):
            assert loop not in vars(cls), f"{cls.__name__} redefines {loop}"
    scope = view.scopes[0]
    assert scope.name == "watch of pending pods in all namespaces"
    wait_for(lambda: scope.health() == (True, "ok"), timeout=5, what="a healthy view")
    sim.down(refuse=True)
    scope.stale_after = 1.0
    wait_for(lambda: not scope.health()[0], timeout=10, what="the view unhealthy")
    assert "is unreachable" in scope.health()[1]
    sim.up()
    wait_for(lambda: scope.health() == (True, "ok"), timeout=10, what="healthy again")


def test_a_view_per_watched_namespace(sim: SimCluster, kube: KubeClient) -> None:
    [in_shop], shop = failing("web")
    [elsewhere], other = failing("web", ns="other")
    apply_all(sim, shop + other)
    view = PodView(kube, namespaces=["shop"], idle_timeout=0.5)
    view.start()
    try:
        assert view.wait_synced(5)
        assert view.covers("shop") and not view.covers("other")
        assert view.get("shop", in_shop) is not None
        assert view.get("other", elsewhere) is None
        paths = {r.path for r in sim.requests_matching("GET", r"/pods$")}
        assert paths == {"/api/v1/namespaces/shop/pods"}
    finally:
        view.stop()


def test_a_relist_projects_each_page_as_it_arrives(sim: SimCluster, kube: KubeClient) -> None:
    """Memory: the view's list is projected page by page (`list_pods_projected`), so a relist
    of 10,000 Pending pods holds one page of whole pods, not all of them (bench/view_memory.py
    measures the peak); every page is read and every pod projected."""
    image = "registry.internal/shop/paged:v1"
    apply_all(sim, factory.failing_deployment("shop", "paged", image, factory.containerd_error(
        "not_found", image), replicas=7))
    kube.LIST_PAGE_SIZE = 3
    sim.clear_requests()
    seen: list[str] = []

    def project(pod: dict[str, Any]) -> str:
        seen.append(pod["metadata"]["name"])
        return f"slim:{pod['metadata']['name']}"

    slim, rv = kube.list_pods_projected(None, project, field_selector=PENDING)
    assert rv and len(slim) == 7 and slim == [f"slim:{name}" for name in seen]
    assert len(sim.requests_matching("GET", PODS_PATH)) == 3  # 3 + 3 + 1
