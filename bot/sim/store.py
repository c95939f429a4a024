"""The in-memory object store: one global resourceVersion counter, bounded history, watchers.

It behaves like etcd behind the apiserver's watch cache, in the ways clients can observe:

* every write gets the next resourceVersion (a single counter across all resources), and
  lists report the counter at the time of the list, so "list, then watch from the list's RV"
  loses nothing;
* a no-op PATCH changes nothing and emits nothing (the apiserver skips unchanged writes);
* the history of changes is bounded: a watch from an RV older than what is retained gets
  ``410 Gone``/``Expired``, which is what forces clients to relist;
* an object that stops (or starts) matching a watch's selector is sent as DELETED (or ADDED),
  as the apiserver's cacheWatcher does.
"""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sim import patching
from bot.sim.resources import GENERATION_KINDS, ResourceType, for_object

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (qualified resource, namespace or "", name)


def now_rfc3339() -> str:
    """UTC now as the apiserver writes timestamps (second precision, Z suffix)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error the HTTP layer renders as a ``kind: Status`` body with the same code."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        """The Status object exactly as the apiserver serializes it."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body

    # Factories with the apiserver's wording (k8s.io/apimachinery/pkg/api/errors).
    @classmethod
    def not_found(cls, rt: ResourceType, name: str) -> ApiError:
        return cls(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))

    @classmethod
    def already_exists(cls, rt: ResourceType, name: str) -> ApiError:
        msg = f'{rt.qualified} "{name}" already exists'
        return cls(409, "AlreadyExists", msg, _details(rt, name))

    @classmethod
    def conflict(cls, rt: ResourceType, name: str) -> ApiError:
        msg = (
            f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again"
        )
        return cls(409, "Conflict", msg, _details(rt, name))

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def invalid(cls, rt: ResourceType, name: str, message: str) -> ApiError:
        msg = f'{rt.kind} "{name}" is invalid: {message}'
        return cls(422, "Invalid", msg, _details(rt, name))

    @classmethod
    def expired(cls, requested: int, oldest: int) -> ApiError:
        return cls(410, "Expired", f"too old resource version: {requested} ({oldest})")


def _details(rt: ResourceType, name: str | None) -> Obj:
    details: Obj = {}
    if name:
        details["name"] = name
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return details


@dataclass(frozen=True)
class Change:
    """One write, as retained in the history and fanned out to watchers."""

    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    rt: ResourceType
    obj: Obj
    prev: Obj | None


#: Sentinels put into a watcher's queue to end its stream.
DROP_CLEAN = "drop-clean"
DROP_ABRUPT = "drop-abrupt"


@dataclass(eq=False)
class Watcher:
    """One open watch: the HTTP thread drains ``queue``; the store only ever puts into it."""

    rt: ResourceType
    namespace: str | None
    predicate: Callable[[Obj], bool]
    queue: queue.SimpleQueue[Change | str] = field(default_factory=queue.SimpleQueue)

    def translate(self, change: Change) -> tuple[str, Obj] | None:
        """The event this watcher should see for a change, or None (cacheWatcher semantics)."""
        if change.rt != self.rt:
            return None
        ns = (change.obj.get("metadata") or {}).get("namespace") or ""
        if self.namespace is not None and ns != self.namespace:
            return None
        now = self.predicate(change.obj)
        if change.type != "MODIFIED" or change.prev is None:
            return (change.type, change.obj) if now else None
        before = self.predicate(change.prev)
        if now and before:
            return ("MODIFIED", change.obj)
        if now:
            return ("ADDED", change.obj)
        if before:
            prev = copy.deepcopy(change.prev)
            prev["metadata"]["resourceVersion"] = str(change.rv)
            return ("DELETED", prev)
        return None


class Store:
    """Thread-safe object store shared by the HTTP threads and the test-side API."""

    def __init__(self, history_limit: int = 1000) -> None:
        self.lock = threading.RLock()
        self.objects: dict[Key, Obj] = {}
        self.rv = 0
        #: Watching from an RV below this is 410 Gone (history before it is forgotten).
        self.compacted_rv = 0
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        self.watchers: set[Watcher] = set()

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.qualified, (namespace or "") if rt.namespaced else "", name)

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, change: Change) -> None:
        self.history.append(change)
        while len(self.history) > self.history_limit:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        for watcher in list(self.watchers):
            watcher.queue.put(change)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get(self.key(rt, namespace, name))
            if obj is None:
                raise ApiError.not_found(rt, name)
            return copy.deepcopy(obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Callable[[Obj], bool] = lambda _: True,
    ) -> tuple[list[Obj], int]:
        """Matching objects sorted like etcd keys (namespace, name), and the list's RV."""
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (res, ns, _), obj in sorted(self.objects.items())
                if res == rt.qualified
                and (namespace is None or ns == namespace)
                and predicate(obj)
            ]
            return items, self.rv

    # -- writes --------------------------------------------------------------------------------
    def create(self, obj: Obj, rt: ResourceType | None = None, namespace: str | None = None) -> Obj:
        """Store a new object (ADDED); 409 AlreadyExists if the key is taken."""
        obj = copy.deepcopy(obj)
        rt = rt or for_object(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError.invalid(rt, "", "metadata.name: Required value: name is required")
        if rt.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        if rt.kind in GENERATION_KINDS:
            meta.setdefault("generation", 1)
        with self.lock:
            key = self.key(rt, meta.get("namespace"), name)
            if key in self.objects:
                raise ApiError.already_exists(rt, name)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self.objects[key] = obj
            self._record(Change(rv, "ADDED", rt, copy.deepcopy(obj), None))
            return copy.deepcopy(obj)

    def mutate(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        fn: Callable[[Obj], Obj],
        expected_rv: str | None = None,
    ) -> Obj:
        """Replace an object by ``fn(copy)``; bumps RV and emits MODIFIED only if it changed."""
        with self.lock:
            key = self.key(rt, namespace, name)
            old = self.objects.get(key)
            if old is None:
                raise ApiError.not_found(rt, name)
            if expected_rv and expected_rv != old["metadata"].get("resourceVersion"):
                raise ApiError.conflict(rt, name)
            new = fn(copy.deepcopy(old))
            meta = new.setdefault("metadata", {})
            # Identity fields are owned by the server, whatever the patch said.
            for field_name in ("name", "namespace", "uid", "creationTimestamp"):
                if field_name in old["metadata"]:
                    meta[field_name] = old["metadata"][field_name]
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            meta["resourceVersion"] = old["metadata"].get("resourceVersion")
            if rt.kind in GENERATION_KINDS:
                meta["generation"] = old["metadata"].get("generation", 1)
                if new.get("spec") != old.get("spec"):
                    meta["generation"] += 1
            if new == old:
                return copy.deepcopy(old)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self.objects[key] = new
            self._record(Change(rv, "MODIFIED", rt, copy.deepcopy(new), copy.deepcopy(old)))
            return copy.deepcopy(new)

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, content_type: str, body: Any
    ) -> Obj:
        expected = None
        if isinstance(body, dict):
            expected = (body.get("metadata") or {}).get("resourceVersion")

        def apply(obj: Obj) -> Obj:
            try:
                return patching.apply_patch(obj, content_type, body)
            except patching.PatchError as exc:
                raise ApiError.invalid(rt, name, str(exc)) from exc

        return self.mutate(rt, namespace, name, apply, expected_rv=expected)

    def replace(self, rt: ResourceType, namespace: str | None, name: str, obj: Obj) -> Obj:
        expected = (obj.get("metadata") or {}).get("resourceVersion")
        return self.mutate(rt, namespace, name, lambda _: copy.deepcopy(obj), expected)

    def delete(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """Remove an object; the DELETED event carries a fresh RV, as in the apiserver."""
        with self.lock:
            key = self.key(rt, namespace, name)
            old = self.objects.pop(key, None)
            if old is None:
                raise ApiError.not_found(rt, name)
            rv = self._next_rv()
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self._record(Change(rv, "DELETED", rt, gone, copy.deepcopy(old)))
            return copy.deepcopy(gone)

    # -- watch ---------------------------------------------------------------------------------
    def open_watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Callable[[Obj], bool],
        resource_version: str | None,
    ) -> tuple[builtins.list[tuple[str, Obj]], Watcher, int]:
        """Initial events, a registered watcher and the current RV, atomically (no gap).

        No RV or "0": synthetic ADDED for every current object (the apiserver's semantics).
        A specific RV: the retained changes after it, or ApiError 410 if it was compacted.
        """
        watcher = Watcher(rt, namespace, predicate)
        with self.lock:
            initial: builtins.list[tuple[str, Obj]] = []
            if resource_version in (None, "", "0"):
                items, _ = self.list(rt, namespace, predicate)
                for item in items:
                    item["apiVersion"], item["kind"] = rt.api_version, rt.kind
                    initial.append(("ADDED", item))
            else:
                try:
                    since = int(str(resource_version))
                except ValueError:
                    raise ApiError.bad_request(
                        f'resourceVersion: Invalid value: "{resource_version}": '
                        "strconv.ParseUint: parsing: invalid syntax"
                    ) from None
                if since < self.compacted_rv:
                    raise ApiError.expired(since, self.compacted_rv)
                for change in self.history:
                    if change.rv > since and (event := watcher.translate(change)) is not None:
                        initial.append(event)
            self.watchers.add(watcher)
            return initial, watcher, self.rv

    def close_watch(self, watcher: Watcher) -> None:
        with self.lock:
            self.watchers.discard(watcher)

    def compact(self) -> int:
        """Forget all history: any watch from an RV older than the current one gets 410."""
        with self.lock:
            self.history.clear()
            self.compacted_rv = self.rv
            return self.rv

    def drop_watches(self, abrupt: bool = False) -> int:
        """End every open watch stream; returns how many were open."""
        with self.lock:
            for watcher in self.watchers:
                watcher.queue.put(DROP_ABRUPT if abrupt else DROP_CLEAN)
            return len(self.watchers)
