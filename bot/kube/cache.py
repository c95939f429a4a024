"""What the diagnosis reads from the API that is shared by many pods, kept for a while.

Why: a storm of failing pods is a few workloads in a few namespaces on a few nodes. Without a
memory every failing pod cost ~8 API reads (issue 10: the pod, its events, its service account,
the namespace's pull secrets twice, its ReplicaSet, its node, the server version), and all but
the pod and its events are the same for every pod of one namespace, workload or node.

What is kept and for how long, chosen so freshness never makes the bot wrong for longer than
an explicit, short window:

* **Owner chains by uid, without expiry** (bounded, least recently used out): a ReplicaSet's or
  a Job's controller owner never changes for one uid (a new ReplicaSet has a new uid), so the
  answer for a uid stays true for as long as the uid exists.
* **The server version** for an hour (an upgrade of the control plane is rare and the version
  only decides whether a newer kubelet behaviour may apply).
* **Pull-secret metadata per namespace, service accounts' imagePullSecrets and referenced
  secrets' metadata** for `fresh_seconds` (30 s by default): a secret created or a service
  account patched to fix an incident is seen within that window. Only `PullSecretInfo` (name,
  type, registries, update time) is kept — never a secret's values: those are read by
  bot/registry/pullsecrets.py when a probe needs them and dropped after it.
* **Nodes** for `fresh_seconds` (conditions such as DiskPressure). Nodes are not watched: a
  node's status is rewritten by its kubelet every few minutes and on every condition change, so
  watching every node of a big cluster would cost more than the few reads a storm makes.

With the fact watches running (bot/kube/fact_watch.py, in `serve`), pull-secret metadata and
service accounts are not read per namespace at all while the watches are current: the
`source` answers from what they listed and watched, so a secret created to fix an incident is
seen at the next diagnosis, not up to 30 s later. The tables above are the fallback (before the
first list, while a watch is out of contact, or without permission to watch).

Failures are not remembered: a read that raised (the API unreachable) is asked again next time.
Concurrent misses for one key are collapsed into one read ("single flight"): with several
workers diagnosing pods of one namespace at once, the namespace's secrets are listed once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from bot.diagnosis.facts import PullSecretInfo

V = TypeVar("V")

#: Default freshness of namespace- and node-level facts, seconds.
FRESH_SECONDS = 30.0
#: How long the server version is believed, seconds.
VERSION_SECONDS = 3600.0
#: Owner chains kept (by uid); about 100 bytes each.
OWNER_ENTRIES = 10_000
#: Entries of each freshness-bounded table (namespaces, service accounts, secrets, nodes).
FRESH_ENTRIES = 10_000
#: How long one look (`fresh_view`) believes what it read of webhooks and namespace labels.
LOOK_SECONDS = 10.0


class _Flight:
    """One read in progress that other threads asking for the same key wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: object = None


class TTLCache(Generic[V]):
    """A bounded, thread-safe map of key → value, each value believed for `ttl` seconds
    (None: forever), least recently used evicted beyond `max_entries`.

    `get_or_load(key, load)` returns the stored value or calls `load()` once, however many
    threads ask at the same time; an exception from `load` reaches every waiting caller's own
    retry (each waiter loads again itself), and nothing is stored.
    """

    def __init__(self, ttl: float | None, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        #: reads answered from memory / by a load, for tests and metrics
        self.hits = 0
        self.loads = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _lookup(self, key: Hashable) -> tuple[bool, V | None]:
        """(found, value) with the lock held."""
        entry = self._items.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if self.ttl is not None and expires <= self._clock():
            del self._items[key]
            return False, None
        self._items.move_to_end(key)
        return True, value

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        while True:
            with self._lock:
                found, value = self._lookup(key)
                if found:
                    self.hits += 1
                    return value  # type: ignore[return-value]
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leader:
                break
            flight.done.wait(timeout=30.0)
            if flight.ok:
                with self._lock:
                    self.hits += 1
                return flight.value  # type: ignore[return-value]
            # the leader failed (loop: become the leader) or is still reading (wait again)
        try:
            value = load()
        except BaseException:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
            raise
        self.put(key, value, flight)
        return value

    def put(self, key: Hashable, value: V, _flight: _Flight | None = None) -> None:
        """Store `value` now (also what a load does)."""
        with self._lock:
            self.loads += 1 if _flight is not None else 0
            expires = self._clock() + self.ttl if self.ttl is not None else 0.0
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
            self._drop_expired()
            if _flight is not None:
                self._flights.pop(key, None)
                _flight.value, _flight.ok = value, True
                _flight.done.set()

    def get(self, key: Hashable) -> V | None:
        """The stored value, if any and still believed (nothing is loaded)."""
        with self._lock:
            found, value = self._lookup(key)
            return value if found else None

    def _drop_expired(self) -> None:
        """Drop expired entries from the least recently used end (lock held): a table of
        entries nobody asks for again (a storm's pods come and go) empties as they expire
        instead of holding `max_entries` stale values until evicted. Stops at the first entry
        still fresh, so each put costs O(1) amortized."""
        if self.ttl is None:
            return
        now = self._clock()
        while self._items:
            expires, _ = next(iter(self._items.values()))
            if expires > now:
                return
            self._items.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def forget_where(self, stale: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key `stale(key)` says changed; how many went."""
        with self._lock:
            keys = [key for key in self._items if stale(key)]
            for key in keys:
                del self._items[key]
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class FactSource(Protocol):
    """Facts kept current by watch (bot/kube/fact_watch.py `WatchedFacts`). Each answer is
    None when the source cannot vouch for it (not listed yet, out of contact, not watched):
    then the client reads the API through the tables."""

    def pull_secrets(self, namespace: str) -> tuple[PullSecretInfo, ...] | None:
        """Metadata of the namespace's docker-registry secrets."""

    def service_account(self, namespace: str, name: str
                        ) -> tuple[bool, tuple[str, ...] | None]:
        """(vouched, the account's imagePullSecrets names — None when it does not exist);
        not vouched: read the API."""


class KubeFactCache:
    """The tables KubeClient keeps; one per client (one per process in `serve`)."""

    def __init__(self, fresh_seconds: float = FRESH_SECONDS, *,
                 version_seconds: float = VERSION_SECONDS,
                 owner_entries: int = OWNER_ENTRIES, fresh_entries: int = FRESH_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh_seconds = fresh_seconds
        self._clock = clock
        #: ReplicaSet/Job uid → (the workload above it, the controller's template images):
        #: immutable per uid (a Deployment makes a new ReplicaSet for a new template, and a
        #: Job's template cannot change)
        self.owners: TTLCache[object] = TTLCache(None, owner_entries, clock)
        #: () → gitVersion
        self.version: TTLCache[object] = TTLCache(version_seconds, 1, clock)
        #: namespace → tuple of PullSecretInfo (or None: may not list secrets)
        self.namespace_secrets: TTLCache[object] = TTLCache(fresh_seconds, fresh_entries, clock)
        #: (namespace, service account) → its imagePullSecrets names (or None)
        self.service_accounts: TTLCache[object] = TTLCache(fresh_seconds, fresh_entries, clock)
        #: (namespace, secret) → PullSecretInfo, None when absent
        self.secrets: TTLCache[object] = TTLCache(fresh_seconds, fresh_entries, clock)
        #: node name → the Node (or None)
        self.nodes: TTLCache[object] = TTLCache(fresh_seconds, fresh_entries, clock)
        #: "mutating"/"validating" → the webhook configurations, trimmed (or None: refused);
        #: listed only for a pod whose image differs from its template, and for a bundle
        self.webhooks: TTLCache[object] = TTLCache(fresh_seconds, 2, clock)
        #: namespace → its labels (or None: may not be read), for webhooks' namespaceSelector
        self.namespace_labels: TTLCache[object] = TTLCache(fresh_seconds, fresh_entries, clock)
        #: watch-fed answers that take precedence over the tables (None: read the API)
        self.source: FactSource | None = None

    def fresh_view(self) -> KubeFactCache:
        """Tables for one look that must be current (a person asking `/imagepull diagnose`
        right after creating the secret): owner chains and the version are shared (they do
        not go stale), everything else is read again."""
        view = KubeFactCache(0.0, fresh_entries=64, clock=self._clock)
        view.owners, view.version = self.owners, self.version
        # read once per look (a view is made per look): the rewrite check and the bundle
        # ask for the same webhook configurations and namespace labels a moment apart
        view.webhooks = TTLCache(LOOK_SECONDS, 2, self._clock)
        view.namespace_labels = TTLCache(LOOK_SECONDS, 4, self._clock)
        view.source = self.source  # current by watch: as fresh as a read
        return view

    def clear(self) -> None:
        """Forget everything (a test, or a credentials change)."""
        for table in (self.owners, self.version, self.namespace_secrets, self.service_accounts,
                      self.secrets, self.nodes, self.webhooks, self.namespace_labels):
            table.clear()
