"""LIST on the scenario cluster: the items, their order and the pages the apiserver would give.

The reference is the store's original algorithm, kept here as an oracle: every stored object
sorted by its key (qualified resource, namespace, name), then filtered by resource, namespace
and selector. A shadow copy of what the cluster holds is kept from what its writes return, so
the oracle never reads the store's internals. The comparison goes through HTTP, as the bot's
client sees it: items, order, ``resourceVersion``, ``continue`` and ``remainingItemCount``.
"""

from __future__ import annotations

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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

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


def test_lists_match_the_reference_across_resources_namespaces_selectors_and_pages() -> None:
    with SimCluster(objects=_objects(seed=7)) as sim:
        shadow = Shadow(sim)
        assert len(shadow.objects) > 100
        assert check_lists(sim, shadow, limits=(1, 3, 500)) > 200


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
