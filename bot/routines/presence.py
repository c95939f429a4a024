"""The heartbeat: every replica of this cluster's agent says, every HEARTBEAT_SECONDS, that it
is alive, into the fleet's presence hash (bot/alerts/presence.py reads it).

Unlike the other routines it runs on every replica, not once per tick across replicas: each
replica writes its own `replica:<owner>` field, so `replicas` counts the ones beating (a
replica silent for `REPLICA_BEATS` intervals (bot/alerts/presence.py `silent_after`) leaves
the count and its field is removed).

Two agents of different clusters under one CLUSTER_NAME would write the same hash and route
each other's requests; the beat cannot stop them, but it says so, naming both identities (the
kube-system namespace's uid, `cluster_uid`), once per `WARN_EVERY`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot import __version__
from bot.alerts.presence import (
    CLUSTERS_KEPT,
    MAX_CLUSTERS,
    MAX_FIELD,
    PRESENCE_TTL,
    clusters_key,
    presence_key,
    silent_after,
)
from bot.diagnosis.names import is_dns1123_label
from bot.kube.client import KubeClient, KubeError
from bot.store import Store

log = logging.getLogger(__name__)

#: a repeated misconfiguration is logged once per this many seconds, not once per beat
WARN_EVERY = 600.0
#: the CLUSTER_NAME every install has until it is set
DEFAULT_CLUSTER_NAME = "default"


def cluster_uid(kube: KubeClient) -> str | None:
    """The cluster's identity: the kube-system namespace's uid (it lives as long as the
    cluster). None when it may not be read (the namespaced profile): the duplicate-name check
    is then off, and the log says why once."""
    try:
        uid = kube.read_namespace("kube-system").get("metadata", {}).get("uid")
    except KubeError as exc:
        log.info("cluster identity unknown (%s): a second cluster using CLUSTER_NAME cannot "
                 "be told apart from this one", exc)
        return None
    return str(uid) if uid else None


class Heartbeat:
    """Write this replica's beat. `open_incidents` and `last_watch_event_at` are callables
    (the incident manager's count, the event watchers' newest event) read at each beat."""

    def __init__(self, store: Store, *, cluster: str, owner: str, interval: float,
                 open_incidents: Callable[[], int],
                 last_watch_event_at: Callable[[], float | None],
                 uid: Callable[[], str | None] | None = None,
                 version: str = __version__, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cluster = cluster
        self.owner = owner
        self.interval = interval
        self.open_incidents = open_incidents
        self.last_watch_event_at = last_watch_event_at
        self._uid_source = uid
        self._uid: str | None = None
        self._uid_read = False
        self.version = version
        self.clock = clock
        self._warned_at: dict[str, float] = {}

    def uid(self) -> str | None:
        """Read once (a GET of kube-system), then kept: the identity never changes."""
        if not self._uid_read and self._uid_source is not None:
            self._uid = self._uid_source()
            self._uid_read = True
        return self._uid

    def run(self) -> None:
        now = self.clock()
        key = presence_key(self.store, self.cluster)
        uid = self.uid()
        self._check_identity(key, uid, now)
        fields = {"heartbeat_at": repr(now), "heartbeat_seconds": repr(self.interval),
                  "version": self.version,
                  "open_incidents": str(self.open_incidents()),
                  f"replica:{self.owner}": repr(now)}
        last_event = self.last_watch_event_at()
        if last_event is not None:
            fields["last_watch_event_at"] = repr(last_event)
        if uid:
            fields["uid"] = uid
        self.store.hset(key, fields, ttl=PRESENCE_TTL)
        self.store.hset(key, {"replicas": str(self._count_replicas(key, now))},
                        ttl=PRESENCE_TTL)
        self.store.zadd_trimmed(clusters_key(self.store), self.cluster, now,
                                keep_from=now - CLUSTERS_KEPT, ttl=CLUSTERS_KEPT)
        self._check_default_name(now)

    def _count_replicas(self, key: str, now: float) -> int:
        """Replicas that beat within `silent_after` (the cluster's own threshold); older
        fields are removed."""
        fresh, stale = 0, []
        for name, value in self.store.hgetall(key).items():
            if not name.startswith("replica:"):
                continue
            try:
                beat = float(value)
            except ValueError:
                beat = 0.0
            if now - beat <= silent_after(self.interval):
                fresh += 1
            else:
                stale.append(name)
        self.store.hdel(key, *stale)
        return fresh

    def _check_identity(self, key: str, uid: str | None, now: float) -> None:
        """Another cluster beating under our name (a different uid, beating recently)."""
        if uid is None:
            return
        other, beat = self.store.hmget_cut(key, ("uid", "heartbeat_at"), MAX_FIELD)
        try:
            recent = beat is not None and now - float(beat) <= silent_after(self.interval)
        except ValueError:
            recent = False
        if other and other != uid and recent:
            self._warn("duplicate",
                       "two clusters report as CLUSTER_NAME=%r to this Redis: this one "
                       "(kube-system uid %s) and another (kube-system uid %s); presence and "
                       "requests for that name mix both clusters. Give each cluster's agent a "
                       "unique CLUSTER_NAME", now, self.cluster, uid, other)

    def _check_default_name(self, now: float) -> None:
        """CLUSTER_NAME left at its default while other clusters share this Redis."""
        if self.cluster != DEFAULT_CLUSTER_NAME:
            return
        others = [name for name, _ in self.store.zrange_by_score(
            clusters_key(self.store), now - PRESENCE_TTL, newest=MAX_CLUSTERS)
            if name != self.cluster and is_dns1123_label(name)]
        if others:
            self._warn("default",
                       "CLUSTER_NAME is not set (it is %r) and other clusters (%s) share this "
                       "Redis: set a unique CLUSTER_NAME for this cluster's agent", now,
                       self.cluster, ", ".join(sorted(others)))

    def _warn(self, topic: str, message: str, now: float, *args: object) -> None:
        if now - self._warned_at.get(topic, -WARN_EVERY) >= WARN_EVERY:
            self._warned_at[topic] = now
            log.error(message, *args)
