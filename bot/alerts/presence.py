"""Which clusters' agents are reporting to the shared Redis, and since when they are silent.

Every replica of every cluster's agent beats (bot/routines/presence.py) into the fleet hash
`ipb-fleet:presence:<cluster>` (expiring an hour after the last beat) and scores its cluster
in the fleet sorted set `ipb-fleet:clusters` (kept a week): so a cluster whose agents stopped
an hour ago is still listed, as silent, rather than vanishing from `/imagepull clusters` and
from the bus's "prod-eu has not reported for 2 min" answer.

Fields of the presence hash (a contract with the bus, issue 13): `heartbeat_at` (unix
seconds, float as text), `heartbeat_seconds` (the interval its agents beat at), `version`,
`last_watch_event_at`, `open_incidents`, `replicas`; plus `uid` (the cluster's identity: the
kube-system namespace's uid) and one `replica:<owner>` field per replica (its last beat), from
which `replicas` is counted.

Silence has one definition, here: a cluster is silent once `REPLICA_BEATS` of its own heartbeat
intervals passed without a beat (`Presence.silence`). `/imagepull clusters` and the bus's
routing both ask it, so a cluster listed as reporting is one requests are sent to. The interval
is the one the cluster's agents advertise in their beat, not the reader's HEARTBEAT_SECONDS:
two clusters may beat at different rates, and it is the beating side that knows when its next
beat is due. A beat without it (an older agent), or with a value outside `INTERVAL_BOUNDS`
(anyone can write this hash), is judged by the reader's own interval.

Everything here is read from a Redis other teams' agents write too, so the reader is bounded
and believes only what a beat could have said: the `MAX_CLUSTERS` most recent names of the
fleet's list that are DNS-1123 labels (what CLUSTER_NAME is; anything else never becomes a
routing target, a store prefix or a metrics label), only the fields named above, each cut to
`MAX_FIELD` bytes by Redis itself (a 1 MB version never crosses the wire), timestamps that
are finite, positive and not ahead of the reader's clock by more than `CLOCK_SKEW` (a beat
from the future would keep a dead cluster "reporting" for ever, and requests would wait in its
stream instead of being refused at once), and counts in [0, `MAX_COUNT`].
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bot.diagnosis.names import is_dns1123_label
from bot.store import Store

#: the presence hash outlives the last beat by this long
PRESENCE_TTL = 3600.0
#: a cluster not beating for this long leaves the fleet's list of clusters
CLUSTERS_KEPT = 7 * 24 * 3600.0
#: a replica is counted while its last beat is younger than this many heartbeat intervals
REPLICA_BEATS = 3
#: the interval assumed when neither the beat nor the reader has one (HEARTBEAT_SECONDS=0 here)
DEFAULT_HEARTBEAT_SECONDS = 15.0
#: an advertised interval is believed only in (low, high]: a huge one would keep a dead
#: cluster "reporting" for hours, and requests would wait in its stream instead of being refused
INTERVAL_BOUNDS = (0.0, 300.0)
#: the fleet's list is read newest first, at most this many names (a flood of fake names
#: cannot make `/imagepull clusters` or a routing decision read without end)
MAX_CLUSTERS = 100
#: each presence field is read cut to this many bytes (a version, a uid, a number)
MAX_FIELD = 64
#: a beat at most this far ahead of the reader's clock is believed (clocks drift); further
#: ahead it was not a beat but a value someone wrote
CLOCK_SKEW = 300.0
#: open incidents and replicas above this are not counts an agent wrote
MAX_COUNT = 1_000_000
#: the fields of the presence hash the reader knows (the `replica:<owner>` ones it does not
#: read: there may be any number of them)
FIELDS = ("heartbeat_at", "heartbeat_seconds", "version", "last_watch_event_at",
          "open_incidents", "replicas", "uid")


def silent_after(heartbeat_seconds: float) -> float:
    """Seconds without a beat after which a cluster beating every `heartbeat_seconds` is
    silent: `REPLICA_BEATS` intervals, so one missed or late beat is not silence."""
    low, high = INTERVAL_BOUNDS
    interval = heartbeat_seconds if low < heartbeat_seconds <= high else \
        DEFAULT_HEARTBEAT_SECONDS
    return REPLICA_BEATS * interval


def presence_key(store: Store, cluster: str) -> str:
    return store.fleet().key("presence", cluster)


def clusters_key(store: Store) -> str:
    return store.fleet().key("clusters")


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None and 0 <= number <= MAX_COUNT else None


def _epoch(value: str | float | None) -> float | None:
    """A unix time a beat could have said: finite and positive (how far ahead is judged
    against the reader's clock, `Presence.silent_for`)."""
    number = _float(value) if isinstance(value, str) or value is None else value
    return number if number is not None and math.isfinite(number) and number > 0 else None


@dataclass(frozen=True)
class Presence:
    """One cluster's agents as their last beat described them (None: not said, or the hash
    expired an hour after the last beat)."""

    cluster: str
    heartbeat_at: float | None
    heartbeat_seconds: float | None = None
    version: str | None = None
    last_watch_event_at: float | None = None
    open_incidents: int | None = None
    replicas: int | None = None
    uid: str | None = None

    def silent_for(self, now: float) -> float:
        """Seconds since the last beat (inf when none is known: silent for over an hour; a
        beat more than `CLOCK_SKEW` ahead of `now` is no beat)."""
        if self.heartbeat_at is None or self.heartbeat_at > now + CLOCK_SKEW:
            return math.inf
        return max(0.0, now - self.heartbeat_at)

    def silent_after(self, heartbeat_seconds: float) -> float:
        """This cluster's threshold: its advertised interval when believable, else the
        reader's `heartbeat_seconds` (see the module docstring)."""
        advertised = self.heartbeat_seconds
        low, high = INTERVAL_BOUNDS
        if advertised is not None and low < advertised <= high:
            return silent_after(advertised)
        return silent_after(heartbeat_seconds)

    def silence(self, now: float, heartbeat_seconds: float) -> float | None:
        """Seconds since the last beat once that makes the cluster silent (inf: no beat
        known); None while it reports. The one test both `/imagepull clusters` and the bus
        use; `heartbeat_seconds` is the reader's own interval (the fallback)."""
        age = self.silent_for(now)
        return age if age > self.silent_after(heartbeat_seconds) else None

    def reporting(self, now: float, heartbeat_seconds: float) -> bool:
        """Beat within the last `REPLICA_BEATS` intervals: one missed beat is not silence."""
        return self.silence(now, heartbeat_seconds) is None

    @classmethod
    def from_hash(cls, cluster: str, fields: dict[str, str]) -> Presence:
        return cls(cluster=cluster,
                   heartbeat_at=_epoch(fields.get("heartbeat_at")),
                   heartbeat_seconds=_float(fields.get("heartbeat_seconds")),
                   version=fields.get("version") or None,
                   last_watch_event_at=_epoch(fields.get("last_watch_event_at")),
                   open_incidents=_int(fields.get("open_incidents")),
                   replicas=_int(fields.get("replicas")),
                   uid=fields.get("uid") or None)


def read_presence(store: Store, cluster: str) -> Presence:
    """`cluster`'s presence: one bounded read (the known fields, each cut to `MAX_FIELD`)."""
    values = store.hmget_cut(presence_key(store, cluster), FIELDS, MAX_FIELD)
    return Presence.from_hash(cluster, {k: v for k, v in zip(FIELDS, values, strict=True)
                                        if v is not None})


def cluster_presence(store: Store, now: float | None = None) -> dict[str, Presence]:
    """Every cluster that beat within a week, by name (sorted), with its presence: the
    `MAX_CLUSTERS` most recent names that are cluster names (DNS-1123 labels). A cluster
    whose hash expired keeps its last beat from the fleet's list (the sorted set's score)."""
    found: dict[str, Presence] = {}
    latest = (time.time() if now is None else now) + CLOCK_SKEW  # no "newest" from the future
    listed = store.zrange_by_score(clusters_key(store), -math.inf, latest, newest=MAX_CLUSTERS)
    for cluster, last_beat in sorted(listed):
        if not is_dns1123_label(cluster):
            continue
        presence = read_presence(store, cluster)
        if presence.heartbeat_at is None:
            presence = Presence(cluster=cluster, heartbeat_at=_epoch(last_beat))
        found[cluster] = presence
    return found
