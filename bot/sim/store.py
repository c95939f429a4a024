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

Objects are kept by resource, then namespace, then name, each level's keys also kept sorted, so
a LIST looks only at the objects of its resource (and namespace) and returns them in key order
without sorting anything: a namespaced LIST costs the objects of that resource in that
namespace, a cluster-wide one the objects of that resource. ``field=value`` requirements on
``metadata.name``, ``metadata.namespace`` and the fields in ``INDEXED_FIELDS`` (the events of
one pod: ``involvedObject.name``) are looked up, not tested on every object. ``examined``
counts the objects LISTs have looked at, so tests can assert what a LIST costs. A page
(``list_page``) starts after the key where the previous one ended and copies only its own
items. A write wakes only the watches of its resource.

The order is (namespace, name) compared as a pair, as this store always listed. etcd compares
``namespace/name`` strings, which differs only where one namespace is another plus ``-...``
(``-`` sorts below ``/``): ``team`` lists before ``team-1`` here, after it on a real cluster.
"""

from __future__ import annotations

import bisect
import builtins
import copy
import datetime as dt
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.sim import patching
from bot.sim.resources import GENERATION_KINDS, ResourceType, for_object

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (qualified resource, namespace or "", name)
Cursor = tuple[str, str]  # (namespace or "", name): where a page ended

#: Field selector labels kept in an index per resource (qualified name): ``label=value`` finds
#: its objects without testing the others. The hot one: a pod's events (``pod_events``).
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {"events": ("involvedObject.name",)}


_SCALARS = (str, int, float, bool, type(None))


def copy_tree(value: Any) -> Any:
    """A deep copy of a JSON-shaped value (dicts, lists, scalars), 3-4x faster than
    ``copy.deepcopy``: every write and every listed item pays for copies. Anything else (a
    ``datetime`` from a hand-written YAML timestamp, say) goes to ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {k: copy_tree(v) for k, v in value.items()}
    if kind is list:
        return [copy_tree(v) for v in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def now_rfc3339() -> str:
    """UTC now as the apiserver writes timestamps (second precision, Z suffix)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error the HTTP layer renders as a ``kind: Status`` body with the same code."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        #: the Status's ListMeta (an expired continue token's fresh token goes here)
        self.metadata = metadata

    def status(self) -> Obj:
        """The Status object exactly as the apiserver serializes it."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata or {}),
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

    @classmethod
    def too_large_resource_version(cls, requested: int, current: int) -> ApiError:
        """A watch from an RV the server has not reached (a restored etcd, or an HA peer whose
        watch cache lags): after waiting for it, the apiserver's cacher gives up with this 504
        (apimachinery errors.NewTooLargeResourceVersionError; kubernetes.io/docs/reference/
        using-api/api-concepts/#resource-versions: an RV newer than the server's is answered
        "504 Gateway Timeout" rather than served stale)."""
        return cls(
            504, "Timeout",
            f"Timeout: Too large resource version: {requested}, current: {current}",
            {"causes": [{"reason": "ResourceVersionTooLarge",
                         "message": "Too large resource version"}],
             "retryAfterSeconds": 1},
        )

    @classmethod
    def continue_expired(cls, fresh_token: str) -> ApiError:
        """A list page asked with a continue token whose snapshot was compacted away.

        kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks:
        "If the specified continue value is no longer valid ... the server will respond with a
        410 ResourceExpired error together with a continue token"; the wording and the fresh
        token in the Status's metadata are the apiserver's (storage/etcd3
        handleCompactedErrorForPaging)."""
        return cls(
            410, "Expired",
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter, or use the continue "
            "token in this response to retrieve the remainder of the results. Continuing with "
            "the provided token results in an inconsistent list - objects that were created, "
            "modified, or deleted between the time the first chunk was returned and now may "
            "show up in the list.",
            metadata={"continue": fresh_token},
        )


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
            prev = copy_tree(change.prev)
            prev["metadata"]["resourceVersion"] = str(change.rv)
            return ("DELETED", prev)
        return None


def _remove(names: builtins.list[str], name: str) -> None:
    i = bisect.bisect_left(names, name)
    if i < len(names) and names[i] == name:
        del names[i]


def _after(names: builtins.list[str], name: str | None) -> Iterator[str]:
    """The sorted ``names`` that sort after ``name`` (all of them for None)."""
    start = 0 if name is None else bisect.bisect_right(names, name)
    for i in range(start, len(names)):
        yield names[i]


class _Bucket:
    """The objects of one resource in one namespace ("" when cluster-scoped), by name."""

    def __init__(self, indexed: tuple[str, ...]) -> None:
        self.objects: dict[str, Obj] = {}
        self.names: builtins.list[str] = []  # sorted: the order LISTs return
        #: indexed field label -> value -> sorted names of the objects with that value
        self.by_field: dict[str, dict[str, builtins.list[str]]] = {f: {} for f in indexed}

    def add(self, rt: ResourceType, name: str, obj: Obj) -> None:
        self.objects[name] = obj
        bisect.insort(self.names, name)
        for label, index in self.by_field.items():
            bisect.insort(index.setdefault(rt.field_value(obj, label) or "", []), name)

    def replace(self, rt: ResourceType, name: str, old: Obj, new: Obj) -> None:
        self.objects[name] = new
        for label, index in self.by_field.items():
            before, after = rt.field_value(old, label) or "", rt.field_value(new, label) or ""
            if before != after:
                self._unindex(index, before, name)
                bisect.insort(index.setdefault(after, []), name)

    def remove(self, rt: ResourceType, name: str) -> Obj:
        obj = self.objects.pop(name)
        _remove(self.names, name)
        for label, index in self.by_field.items():
            self._unindex(index, rt.field_value(obj, label) or "", name)
        return obj

    @staticmethod
    def _unindex(index: dict[str, builtins.list[str]], value: str, name: str) -> None:
        names = index.get(value)
        if names is not None:
            _remove(names, name)
            if not names:
                del index[value]

    def candidates(self, fields: Mapping[str, str], after: str | None) -> Iterator[str]:
        """Names after ``after``, in order, narrowed by an exact-name or an indexed field
        requirement if there is one (the caller still tests every requirement)."""
        if "metadata.name" in fields:
            name = fields["metadata.name"]
            if name in self.objects and (after is None or name > after):
                yield name
            return
        for label, index in self.by_field.items():
            if label in fields:
                yield from _after(index.get(fields[label], []), after)
                return
        yield from _after(self.names, after)

    def count_after(self, after: str | None) -> int:
        return len(self.names) - (0 if after is None else bisect.bisect_right(self.names, after))


class _Table:
    """The objects of one resource: a bucket per namespace, namespaces kept sorted."""

    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt
        self.indexed = INDEXED_FIELDS.get(rt.qualified, ())
        self.buckets: dict[str, _Bucket] = {}
        self.namespaces: builtins.list[str] = []  # sorted

    def bucket(self, namespace: str) -> _Bucket:
        found = self.buckets.get(namespace)
        if found is None:
            found = self.buckets[namespace] = _Bucket(self.indexed)
            bisect.insort(self.namespaces, namespace)
        return found

    def drop_if_empty(self, namespace: str) -> None:
        if not self.buckets[namespace].objects:
            del self.buckets[namespace]
            _remove(self.namespaces, namespace)

    def spaces(self, namespace: str | None, fields: Mapping[str, str],
               after: Cursor | None) -> Iterator[str]:
        """The namespaces a LIST visits, in order: one, or all from the cursor's on."""
        wanted = fields.get("metadata.namespace")
        if namespace is not None and wanted is not None and wanted != namespace:
            return
        only = namespace if namespace is not None else wanted
        if only is not None:
            if after is None or only >= after[0]:  # no key of an earlier namespace is after
                yield only
            return
        yield from self.namespaces[bisect.bisect_left(self.namespaces, after[0]) if after
                                   else 0:]

    def count_after(self, namespace: str | None, after: Cursor) -> int:
        """How many objects (no selector) sort after the cursor, without looking at them."""
        total = 0
        for ns in self.spaces(namespace, {}, after):
            bucket = self.buckets.get(ns)
            if bucket is not None:
                total += bucket.count_after(after[1] if ns == after[0] else None)
        return total


@dataclass
class Page:
    """One LIST answer from the store: items in key order, the RV, what is left."""

    items: builtins.list[Obj]
    rv: int
    #: matching objects after the last item (0 when the page holds the rest)
    remaining: int = 0
    #: key of the last item returned when more remain: where the next page starts after
    last: Cursor | None = None


class Store:
    """Thread-safe object store shared by the HTTP threads and the test-side API."""

    def __init__(self, history_limit: int = 1000) -> None:
        self.lock = threading.RLock()
        #: qualified resource -> its objects by namespace and name
        self.tables: dict[str, _Table] = {}
        self.rv = 0
        #: stored objects that LISTs have looked at (tested, or copied out): what LISTs cost
        self.examined = 0
        #: Watching from an RV below this is 410 Gone (history before it is forgotten).
        self.compacted_rv = 0
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        self.watchers: set[Watcher] = set()
        #: qualified resource -> its open watches: a write wakes only the watches of its type
        self._watching: dict[str, set[Watcher]] = {}

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.qualified, (namespace or "") if rt.namespaced else "", name)

    def _table(self, rt: ResourceType) -> _Table:
        table = self.tables.get(rt.qualified)
        if table is None:
            table = self.tables[rt.qualified] = _Table(rt)
        return table

    def _find(self, key: Key) -> Obj | None:
        table = self.tables.get(key[0])
        bucket = table.buckets.get(key[1]) if table is not None else None
        return bucket.objects.get(key[2]) if bucket is not None else None

    def __len__(self) -> int:
        with self.lock:
            return sum(len(b.objects) for t in self.tables.values() for b in t.buckets.values())

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, change: Change) -> None:
        self.history.append(change)
        while len(self.history) > self.history_limit:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        for watcher in tuple(self._watching.get(change.rt.qualified, ())):
            watcher.queue.put(change)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            obj = self._find(self.key(rt, namespace, name))
            if obj is None:
                raise ApiError.not_found(rt, name)
            return copy_tree(obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Callable[[Obj], bool] | None = None,
        *,
        fields: Mapping[str, str] | None = None,
    ) -> tuple[builtins.list[Obj], int]:
        """Matching objects sorted like etcd keys (namespace, name), and the list's RV."""
        page = self.list_page(rt, namespace, predicate, fields=fields)
        return page.items, page.rv

    def list_page(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Callable[[Obj], bool] | None = None,
        *,
        fields: Mapping[str, str] | None = None,
        after: Cursor | None = None,
        limit: int = 0,
    ) -> Page:
        """Up to ``limit`` (0: all) matching objects whose key sorts after ``after``.

        An object matches if it is of ``rt``, in ``namespace`` (None: any), has every
        ``fields`` label equal to its value (as ``ResourceType.field_value`` renders it) and
        passes ``predicate``. ``fields`` is what lets the store look objects up instead of
        testing them all: give it the selector's ``field=value`` requirements.
        """
        fields = fields or {}
        with self.lock:
            page = Page([], self.rv)
            table = self.tables.get(rt.qualified)
            if table is None:
                return page
            last: Cursor | None = None
            for ns in table.spaces(namespace, fields, after):
                bucket = table.buckets.get(ns)
                if bucket is None:
                    continue
                start = after[1] if after is not None and ns == after[0] else None
                for name in bucket.candidates(fields, start):
                    obj = bucket.objects[name]
                    if 0 < limit <= len(page.items) and predicate is None and not fields:
                        # The rest all match: count them without looking at them.
                        page.remaining = table.count_after(namespace, (ns, name)) + 1
                        page.last = last
                        return page
                    self.examined += 1
                    if not all(rt.field_value(obj, label) == value
                               for label, value in fields.items()):
                        continue
                    if predicate is not None and not predicate(obj):
                        continue
                    if 0 < limit <= len(page.items):
                        page.remaining += 1
                    else:
                        page.items.append(copy_tree(obj))
                        last = (ns, name)
            if page.remaining:
                page.last = last
            return page

    # -- writes --------------------------------------------------------------------------------
    def create(self, obj: Obj, rt: ResourceType | None = None, namespace: str | None = None) -> Obj:
        """Store a new object (ADDED); 409 AlreadyExists if the key is taken."""
        obj = copy_tree(obj)
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
            if self._find(key) is not None:
                raise ApiError.already_exists(rt, name)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._table(rt).bucket(key[1]).add(rt, name, obj)
            self._record(Change(rv, "ADDED", rt, copy_tree(obj), None))
            return copy_tree(obj)

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
            old = self._find(key)
            if old is None:
                raise ApiError.not_found(rt, name)
            if expected_rv and expected_rv != old["metadata"].get("resourceVersion"):
                raise ApiError.conflict(rt, name)
            new = fn(copy_tree(old))
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
                return copy_tree(old)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self.tables[key[0]].buckets[key[1]].replace(rt, name, old, new)
            self._record(Change(rv, "MODIFIED", rt, copy_tree(new), copy_tree(old)))
            return copy_tree(new)

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
        return self.mutate(rt, namespace, name, lambda _: copy_tree(obj), expected)

    def delete(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """Remove an object; the DELETED event carries a fresh RV, as in the apiserver."""
        with self.lock:
            key = self.key(rt, namespace, name)
            if self._find(key) is None:
                raise ApiError.not_found(rt, name)
            table = self.tables[key[0]]
            old = table.buckets[key[1]].remove(rt, name)
            table.drop_if_empty(key[1])
            rv = self._next_rv()
            gone = copy_tree(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self._record(Change(rv, "DELETED", rt, gone, copy_tree(old)))
            return copy_tree(gone)

    # -- watch ---------------------------------------------------------------------------------
    def open_watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Callable[[Obj], bool],
        resource_version: str | None,
        fields: Mapping[str, str] | None = None,
    ) -> tuple[builtins.list[tuple[str, Obj]], Watcher, int]:
        """Initial events, a registered watcher and the current RV, atomically (no gap).

        No RV or "0": synthetic ADDED for every current object (the apiserver's semantics).
        A specific RV: the retained changes after it, or ApiError 410 if it was compacted.
        ``fields``: the predicate's ``field=value`` requirements, as for ``list``.
        """
        watcher = Watcher(rt, namespace, predicate)
        with self.lock:
            initial: builtins.list[tuple[str, Obj]] = []
            if resource_version in (None, "", "0"):
                items, _ = self.list(rt, namespace, predicate, fields=fields)
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
                # The changes after `since`, found from the newest end: a watch resuming
                # from a recent RV does not walk the whole retained history.
                newer: builtins.list[Change] = []
                for change in reversed(self.history):
                    if change.rv <= since:
                        break
                    newer.append(change)
                for change in reversed(newer):
                    if (event := watcher.translate(change)) is not None:
                        initial.append(event)
            self.watchers.add(watcher)
            self._watching.setdefault(rt.qualified, set()).add(watcher)
            return initial, watcher, self.rv

    def close_watch(self, watcher: Watcher) -> None:
        with self.lock:
            self.watchers.discard(watcher)
            self._watching.get(watcher.rt.qualified, set()).discard(watcher)

    def progress(self, watcher: Watcher, sent: int) -> int:
        """The RV a BOOKMARK of this watch may carry, ``sent`` being the highest RV of the
        changes it has taken from its queue: with nothing left in its queue, every change up
        to the store's RV has reached it (a write to another resource is none of its
        business but still moves its RV on, as the apiserver's progress notifications do)."""
        with self.lock:
            return self.rv if watcher.queue.empty() else sent

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
