"""LIST on the scenario cluster: the items, their order and the pages the apiserver would give,
and what a LIST costs the store.

The reference is the store's original algorithm, kept here as an oracle: every stored object
sorted by its key (qualified resource, namespace, name), then filtered by resource, namespace
and selector. A shadow copy of what the cluster holds is kept from what its writes return, so
the oracle never reads the store's internals. The comparison goes through HTTP, as the bot's
client sees it: items, order, ``resourceVersion``, ``continue`` and ``remainingItemCount``.

The cost is counted, not timed: ``Store.examined`` counts the stored objects LISTs look at.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.sim.resources import ResourceType
from bot.sim.selectors import compile_selectors
from bot.sim.server import SimCluster
from bot.sim.store import copy_tree

pytestmark = [pytest.mark.timeout(120)]

Obj = dict[str, Any]
Key = tuple[str, str, str]

# "team" sorts before "team-1" as a tuple element but after it as a "team/..." key string:
# the order kept is the store's (namespace, name) tuple order.
NAMESPACES = ("a", "a-b", "b", "team", "team-1", "z")
PODS = ("api-1", "api-2", "web-1", "web-10", "web-2", "web.x", "worker")


def _rng(seed: float) -> random.Random:
    return random.Random(seed)  # noqa: S311 - seeded for reproducible test data, not secrets


def _pod(ns: str, name: str, rng: random.Random) -> Obj:
    labels = {"app": name.split("-")[0].split(".")[0]}
    if rng.random() < 0.5:
        labels["tier"] = rng.choice(["front", "back"])
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": rng.choice(["worker-1", "worker-2"]),
                 "containers": [{"name": "c", "image": "nginx:1.27"}]},
        "status": {"phase": rng.choice(["Pending", "Running"])},
    }


def _event(ns: str, name: str, pod: str, rng: random.Random) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
        "reason": rng.choice(["Failed", "BackOff", "Pulled"]),
        "type": rng.choice(["Normal", "Warning"]),
        "message": "m", "count": 1,
    }


def _secret(ns: str, name: str, rng: random.Random) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        "type": rng.choice(["Opaque", "kubernetes.io/dockerconfigjson"]),
    }


def _node(name: str, rng: random.Random) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"zone": rng.choice(["x", "y"])}},
            "spec": {"unschedulable": rng.random() < 0.3}}


def _deployment(ns: str, name: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"replicas": 1}}


def _objects(seed: int) -> list[Obj]:
    rng = _rng(seed)
    out: list[Obj] = [_node(f"worker-{i}", rng) for i in (3, 1, 2, 10)]
    for ns in NAMESPACES:
        for pod in rng.sample(PODS, 5):
            out.append(_pod(ns, pod, rng))
            for i in range(rng.randint(0, 3)):
                out.append(_event(ns, f"{pod}.{i:04x}", pod, rng))
        out.append(_event(ns, "web-orphan.0001", "web-gone", rng))
        out.extend(_secret(ns, f"s{i}", rng) for i in range(3))
        out.append(_deployment(ns, rng.choice(["web", "api"])))
    return out


def _key(obj: Obj) -> Key:
    rt = SimCluster.resource(obj["kind"])
    meta = obj["metadata"]
    return rt.qualified, (meta.get("namespace") or "") if rt.namespaced else "", meta["name"]


class Shadow:
    """What the cluster holds, from what its writes returned (never from its internals)."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.objects: dict[Key, Obj] = {}
        for obj in _dump(sim):
            self.objects[_key(obj)] = obj

    def apply(self, obj: Obj) -> None:
        out = self.sim.apply(obj)
        self.objects[_key(out)] = out

    def patch(self, kind: str, name: str, body: Obj, ns: str | None) -> None:
        out = self.sim.patch(kind, name, body, ns)
        self.objects[_key(out)] = out

    def delete(self, kind: str, name: str, ns: str | None) -> None:
        out = self.sim.delete(kind, name, ns)
        del self.objects[_key(out)]

    def reference_list(self, rt: ResourceType, ns: str | None,
                       pred: Callable[[Obj], bool]) -> list[Obj]:
        """The store's original LIST: every object sorted by key, then filtered."""
        return [obj for (res, obj_ns, _), obj in sorted(self.objects.items())
                if res == rt.qualified and (ns is None or obj_ns == ns) and pred(obj)]


def _dump(sim: SimCluster) -> list[Obj]:
    return [o for rt in _TYPES for o in sim.list(rt.plural)]


_TYPES = tuple(SimCluster.resource(k) for k in ("pods", "events", "secrets", "nodes",
                                                "deployments"))

#: (labelSelector, fieldSelector) asked of each resource, beside no selector at all.
SELECTORS: dict[str, list[tuple[str | None, str | None]]] = {
    "pods": [
        ("app=web", None), ("app!=web", None), ("app in (web,api)", None), ("!tier", None),
        ("tier", "status.phase=Pending"), (None, "spec.nodeName=worker-1"),
        (None, "status.phase!=Running"), (None, "metadata.name=web-2"),
        (None, "metadata.namespace=team"), (None, "metadata.name=web-2,metadata.namespace=b"),
    ],
    "events": [
        (None, "involvedObject.name=web-1"), (None, "involvedObject.name=web-1,reason=Failed"),
        (None, "involvedObject.name!=web-1"), (None, "involvedObject.name=web-gone"),
        (None, "involvedObject.name=nobody"), (None, "involvedObject.name="),
        (None, "involvedObject.name=web-1,involvedObject.name=api-1"),
        (None, "type=Warning"), (None, "metadata.namespace=a-b"),
        (None, "metadata.name=web-orphan.0001"), (None, "involvedObject.kind=Pod"),
    ],
    "secrets": [(None, "type=kubernetes.io/dockerconfigjson"), (None, "type!=Opaque")],
    "nodes": [("zone=x", None), (None, "spec.unschedulable=true"),
              (None, "metadata.name=worker-10")],
    "deployments": [("app=web", None)],
}


def _path(rt: ResourceType, ns: str | None) -> str:
    base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    return f"{base}/namespaces/{ns}/{rt.plural}" if ns is not None else f"{base}/{rt.plural}"


def _get(sim: SimCluster, path: str, **query: Any) -> Obj:
    qs = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    with urllib.request.urlopen(f"{sim.url}{path}?{qs}", timeout=10) as resp:
        body: Obj = json.loads(resp.read())
        return body


def _as_listed(obj: Obj) -> Obj:
    out = dict(obj)
    out.pop("kind", None)
    out.pop("apiVersion", None)
    return out


def _cases() -> Iterator[tuple[ResourceType, str | None, str | None, str | None]]:
    for rt in _TYPES:
        spaces: tuple[str | None, ...] = (None,)
        if rt.namespaced:
            spaces = (None, *NAMESPACES, "missing")
        for ns in spaces:
            for label, fields in [(None, None), *SELECTORS[rt.plural]]:
                yield rt, ns, label, fields


def check_lists(sim: SimCluster, shadow: Shadow, limits: tuple[int, ...]) -> int:
    """Every case, unpaginated and in pages of each limit, against the reference; how many."""
    checked = 0
    for rt, ns, label, fields in _cases():
        want = [_as_listed(o) for o in
                shadow.reference_list(rt, ns, compile_selectors(rt, label, fields))]
        what = f"{rt.plural} ns={ns} labels={label} fields={fields}"
        whole = _get(sim, _path(rt, ns), labelSelector=label, fieldSelector=fields)
        assert whole["items"] == want, what
        assert whole["metadata"] == {"resourceVersion": str(sim.store.rv)}, what
        for limit in limits:
            got: list[Obj] = []
            token = None
            first_rv = None
            while True:
                page = _get(sim, _path(rt, ns), labelSelector=label, fieldSelector=fields,
                            limit=limit, **({"continue": token} if token else {}))
                meta = page["metadata"]
                first_rv = first_rv or meta["resourceVersion"]
                assert meta["resourceVersion"] == first_rv, what
                assert len(page["items"]) <= limit, what
                got.extend(page["items"])
                token = meta.get("continue")
                if not token:
                    assert "remainingItemCount" not in meta, what
                    break
                assert len(page["items"]) == limit, what
                assert meta["remainingItemCount"] == len(want) - len(got), what
            assert got == want, f"{what} limit={limit}"
        checked += 1
    return checked


@pytest.mark.integration
def test_lists_match_the_reference_across_resources_namespaces_selectors_and_pages() -> None:
    with SimCluster(objects=_objects(seed=7)) as sim:
        shadow = Shadow(sim)
        assert len(shadow.objects) > 100
        assert check_lists(sim, shadow, limits=(1, 3, 500)) > 200


@pytest.mark.integration
def test_lists_still_match_after_patches_replacements_and_deletes() -> None:
    rng = _rng(11)
    with SimCluster(objects=_objects(seed=3)) as sim:
        shadow = Shadow(sim)
        for _ in range(150):
            key = rng.choice(sorted(shadow.objects))
            obj = shadow.objects[key]
            kind, ns, name = obj["kind"], obj["metadata"].get("namespace"), key[2]
            op = rng.random()
            if op < 0.2:
                shadow.delete(kind, name, ns)
            elif op < 0.4 and kind == "Event":  # the indexable field moves to another pod
                shadow.patch(kind, name, {"involvedObject": {"name": rng.choice(PODS)}}, ns)
            elif op < 0.6:
                shadow.patch(kind, name, {"metadata": {"labels": {"app": "web"}}}, ns)
            elif op < 0.7:  # a no-op patch: nothing changes, nothing is emitted
                shadow.patch(kind, name, {"metadata": {"labels": obj["metadata"].get(
                    "labels") or {}}}, ns)
            else:
                ns_new = rng.choice(NAMESPACES)
                rng_obj = _rng(rng.random())
                shadow.apply(_event(ns_new, f"new-{rng.randint(0, 40)}.00ff",
                                    rng.choice(PODS), rng_obj))
                shadow.apply(_pod(ns_new, rng.choice(PODS), rng_obj))  # create or replace
        check_lists(sim, shadow, limits=(2,))


# -- pages by key ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_next_page_starts_after_the_last_key_whatever_was_written_in_between() -> None:
    """The continue token holds the last key, as the apiserver's does: a write before it
    neither repeats an item on the next page nor skips one (an offset would do both)."""
    rng = _rng(1)
    with SimCluster(objects=[_pod("shop", f"p{i}", rng) for i in range(1, 7)]) as sim:
        path = _path(SimCluster.resource("pods"), "shop")

        def names(page: Obj) -> list[str]:
            return [p["metadata"]["name"] for p in page["items"]]

        first = _get(sim, path, limit=2)
        assert names(first) == ["p1", "p2"]
        sim.apply(_pod("shop", "p0", rng))
        second = _get(sim, path, limit=2, **{"continue": first["metadata"]["continue"]})
        assert names(second) == ["p3", "p4"]  # not p2 again
        for name in ("p1", "p2", "p3"):
            sim.delete("pods", name, "shop")
        third = _get(sim, path, limit=2, **{"continue": second["metadata"]["continue"]})
        assert names(third) == ["p5", "p6"]  # nothing skipped
        rv = first["metadata"]["resourceVersion"]
        assert second["metadata"]["resourceVersion"] == rv
        assert third["metadata"] == {"resourceVersion": rv}


@pytest.mark.integration
@pytest.mark.parametrize("token", ["not-base64!", "eyJydiI6IDF9", "eyJydiI6MSwiYWZ0ZXIiOjN9"])
def test_a_continue_token_it_did_not_give_is_400(token: str) -> None:
    with SimCluster(objects=[_pod("shop", "p1", _rng(1))]) as sim:
        url = f"{sim.url}/api/v1/namespaces/shop/pods?limit=1&continue={token}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=5)
        assert err.value.code == 400
        assert json.loads(err.value.read())["message"] == "continue key is not valid"


# -- what a LIST costs -----------------------------------------------------------------------------
def _crowded_store(namespaces: int, pods: int) -> SimCluster:
    """``pods`` pods per namespace, each with 3 events, plus secrets and nodes (not started)."""
    rng = _rng(5)
    sim = SimCluster()
    for n in range(namespaces):
        ns = f"ns-{n:02d}"
        for p in range(pods):
            sim.store.create(_pod(ns, f"pod-{p:03d}", rng))
            for e in range(3):
                sim.store.create(_event(ns, f"pod-{p:03d}.{e:04x}", f"pod-{p:03d}", rng))
        sim.store.create(_secret(ns, "pull", rng))
    for n in range(20):
        sim.store.create(_node(f"node-{n}", rng))
    return sim


def _examined(sim: SimCluster, fn: Callable[..., Any], *args: Any, **kwargs: Any
              ) -> tuple[int, Any]:
    """How many stored objects ``fn(*args, **kwargs)`` had LISTs look at, and its result."""
    before = sim.store.examined
    out = fn(*args, **kwargs)
    return sim.store.examined - before, out


@pytest.mark.parametrize("namespaces", [2, 10])  # the cost must not grow with the rest
def test_a_namespaced_list_looks_only_at_that_resource_in_that_namespace(namespaces: int
                                                                        ) -> None:
    sim = _crowded_store(namespaces, pods=30)
    events, pods = sim.resource("events"), sim.resource("pods")
    assert len(sim.store) == namespaces * (30 * 4 + 1) + 20
    cost, (items, _) = _examined(sim, sim.store.list, events, "ns-01")
    assert len(items) == 90 and cost == 90
    cost, (items, _) = _examined(sim, sim.store.list, pods, "ns-01")
    assert len(items) == 30 and cost == 30
    cost, (items, _) = _examined(sim, sim.store.list, pods, None)
    assert len(items) == cost == namespaces * 30  # cluster-wide: that resource only
    cost, (items, _) = _examined(sim, sim.store.list, pods, "ns-99")
    assert items == [] and cost == 0


def test_a_pods_events_are_looked_up_not_searched() -> None:
    sim = _crowded_store(namespaces=4, pods=50)
    events = sim.resource("events")
    sel = compile_selectors(events, None, "involvedObject.name=pod-007")

    def pod_events(ns: str | None) -> list[Obj]:
        return sim.store.list(events, ns, sel, fields=sel.field_equals())[0]

    cost, items = _examined(sim, lambda: pod_events("ns-02"))
    assert cost == 3 and [e["metadata"]["name"] for e in items] == [
        "pod-007.0000", "pod-007.0001", "pod-007.0002"]
    cost, items = _examined(sim, lambda: pod_events(None))  # every namespace's pod-007
    assert cost == 12 and [e["metadata"]["namespace"] for e in items][::3] == [
        "ns-00", "ns-01", "ns-02", "ns-03"]
    by_name = compile_selectors(events, None, "metadata.name=pod-001.0002")
    cost, (items, _) = _examined(sim, sim.store.list, events, "ns-00", by_name,
                                 fields=by_name.field_equals())
    assert cost == 1 and len(items) == 1


def test_the_index_follows_every_write() -> None:
    sim = _crowded_store(namespaces=1, pods=3)
    events = sim.resource("events")

    def names(pod: str) -> list[str]:
        sel = compile_selectors(events, None, f"involvedObject.name={pod}")
        return [e["metadata"]["name"] for e in
                sim.store.list(events, "ns-00", sel, fields=sel.field_equals())[0]]

    sim.patch("events", "pod-000.0001", {"involvedObject": {"name": "pod-002"}}, "ns-00")
    assert names("pod-000") == ["pod-000.0000", "pod-000.0002"]
    assert names("pod-002") == ["pod-000.0001", "pod-002.0000", "pod-002.0001", "pod-002.0002"]
    sim.delete("events", "pod-002.0000", "ns-00")
    assert names("pod-002") == ["pod-000.0001", "pod-002.0001", "pod-002.0002"]
    moved = _event("ns-00", "pod-002.0001", "pod-001", _rng(2))
    sim.apply(moved)  # a replace (PUT)
    assert names("pod-002") == ["pod-000.0001", "pod-002.0002"]
    assert names("pod-001")[-1] == "pod-002.0001"
    sim.apply(_event("ns-00", "new.0001", "pod-001", _rng(2)))  # a create
    assert names("pod-001")[0] == "new.0001"
    for name in names("pod-001"):
        sim.delete("events", name, "ns-00")
    assert names("pod-001") == []


def test_pages_cost_their_own_items_not_the_whole_list() -> None:
    sim = _crowded_store(namespaces=5, pods=40)  # 600 events
    events = sim.resource("events")
    seen: list[str] = []
    after = None
    pages = 0
    total_cost = 0
    while True:
        cost, page = _examined(sim, sim.store.list_page, events, None, limit=50, after=after)
        total_cost += cost
        pages += 1
        assert cost == len(page.items) == (50 if page.remaining else 600 - len(seen))
        seen.extend(f'{e["metadata"]["namespace"]}/{e["metadata"]["name"]}'
                    for e in page.items)
        if not page.remaining:
            break
        assert page.remaining == 600 - len(seen)
        after = page.last
    assert pages == 12 and total_cost == 600 and len(set(seen)) == 600


@pytest.mark.integration
def test_the_server_hands_the_selector_to_the_index() -> None:
    """``pod_events``' request over HTTP costs the pod's events, in a list and a watch."""
    with _crowded_store(namespaces=3, pods=40) as sim:
        path = "/api/v1/namespaces/ns-01/events"
        cost, body = _examined(sim, lambda: _get(
            sim, path, fieldSelector="involvedObject.name=pod-010"))
        assert cost == 3 and len(body["items"]) == 3
        cost, body = _examined(sim, lambda: _get(
            sim, path, fieldSelector="involvedObject.name=pod-010,type=Warning"))
        assert cost == 3 and all(e["type"] == "Warning" for e in body["items"])
        query = "watch=1&timeoutSeconds=1&fieldSelector=involvedObject.name%3Dpod-010"
        url = f"{sim.url}{path}?{query}"
        before = sim.store.examined
        with urllib.request.urlopen(url, timeout=10) as resp:
            lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        assert sim.store.examined - before == 3
        assert [(e["type"], e["object"]["involvedObject"]["name"]) for e in lines] == [
            ("ADDED", "pod-010")] * 3


# -- copies and history ----------------------------------------------------------------------------
def test_copies_share_nothing_with_the_store() -> None:
    stamp = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    tree: Obj = {"a": [{"b": 1, "c": None}, "x", 2.5, True], "when": stamp}
    copied = copy_tree(tree)
    assert copied == tree and copied["a"] is not tree["a"] and copied["a"][0] is not tree["a"][0]
    sim = _crowded_store(namespaces=1, pods=1)
    pods = sim.resource("pods")
    listed = sim.store.list(pods, "ns-00")[0][0]
    listed["metadata"]["labels"]["app"] = "changed"
    got = sim.store.get(pods, "ns-00", "pod-000")
    got["spec"]["containers"].clear()
    again = sim.store.get(pods, "ns-00", "pod-000")
    assert again["metadata"]["labels"]["app"] == "pod" and again["spec"]["containers"]


def test_a_watch_from_an_rv_gets_exactly_the_changes_after_it() -> None:
    sim = _crowded_store(namespaces=2, pods=5)
    events = sim.resource("events")
    since = sim.store.rv
    sim.bump_event("ns-01", "pod-003.0001")
    sim.delete("pods", "pod-001", "ns-00")
    sim.bump_event("ns-00", "pod-002.0000")
    initial, watcher, rv = sim.store.open_watch(events, None, lambda _: True, str(since))
    sim.store.close_watch(watcher)
    assert rv == since + 3
    assert [(t, o["metadata"]["name"]) for t, o in initial] == [
        ("MODIFIED", "pod-003.0001"), ("MODIFIED", "pod-002.0000")]
    initial, watcher, _ = sim.store.open_watch(events, None, lambda _: True, str(rv))
    sim.store.close_watch(watcher)
    assert initial == []


def test_a_write_wakes_only_the_watches_of_its_resource() -> None:
    sim = _crowded_store(namespaces=1, pods=2)
    pods, events = sim.resource("pods"), sim.resource("events")
    _, pod_watch, rv = sim.store.open_watch(pods, None, lambda _: True, None)
    _, event_watch, _ = sim.store.open_watch(events, "ns-00", lambda _: True, None)
    sim.bump_event("ns-00", "pod-001.0000")
    sim.bump_event("ns-00", "pod-000.0002")
    assert pod_watch.queue.empty() and event_watch.queue.qsize() == 2
    # The pod watch was sent everything that concerns it: its bookmarks move on all the same.
    assert sim.store.progress(pod_watch, rv) == sim.store.rv == rv + 2
    assert sim.store.progress(event_watch, rv) == rv  # two changes not taken yet
    event_watch.queue.get()
    event_watch.queue.get()
    assert sim.store.progress(event_watch, rv + 2) == rv + 2
    sim.store.close_watch(pod_watch)
    sim.patch("pods", "pod-000", {"metadata": {"labels": {"x": "y"}}}, "ns-00")
    assert pod_watch.queue.empty() and sim.store.watchers == {event_watch}


@pytest.mark.integration
def test_a_bookmark_carries_the_rv_of_writes_to_other_resources() -> None:
    with _crowded_store(namespaces=1, pods=2) as sim:
        sim.bookmark_interval = 0.2
        url = (f"{sim.url}/api/v1/namespaces/ns-00/pods?watch=1&timeoutSeconds=1"
               f"&allowWatchBookmarks=true&resourceVersion={sim.store.rv}")
        with urllib.request.urlopen(url, timeout=10) as resp:
            sim.wait_for_watches(1)
            sim.bump_event("ns-00", "pod-001.0000")  # an event: nothing for this watch
            lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        assert {line["type"] for line in lines} == {"BOOKMARK"}
        assert lines[-1]["object"]["metadata"]["resourceVersion"] == str(sim.store.rv)
