"""Shared causes across clusters (issue 13, Deliver 5): one registry outage, one story.

A shared cause (429, DNS, TLS, an unreachable registry: `CauseInfo.shared_scope`) has the
registry host as its scope, so the same outage seen by several clusters' agents is one
incident per cluster with the same cause and scope. Each agent writes its incident into a fleet
index, `ipb-fleet:shared:<cause>:<scope>` (a hash: cluster → JSON {channel, thread_ts,
permalink, opened_at, pods, seen_at}), when the root is posted, and removes it when the incident
resolves. Every agent reads the index of its open shared incidents once per group_interval
(one HGETALL) and edits its root when the set of other clusters changed, so each alert says
"also failing in prod-us, staging" with a link to their threads.

An agent that dies leaves its entry behind: entries are re-written (`seen_at`) while the
incident is open, readers ignore entries not re-written within `ENTRY_TTL`, and the whole hash
expires `ENTRY_TTL` after its last write. Nothing in the index is a command: it is only shown,
and cluster names and links are escaped by bot/slack/text.py like any other text.

The store given here is the fleet view (`Store.fleet()`); without Redis there is no fleet and
the composition root builds no `SharedCauses`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bot.diagnosis.causes import Cause
from bot.diagnosis.names import is_dns1123_label
from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

#: How long an entry counts without being re-written (seconds): a dead cluster's incident
#: stops being "also failing" after this, and the index of a forgotten outage expires.
ENTRY_TTL = 15 * 60.0
#: An open incident re-writes its entry when it is older than this (a fraction of ENTRY_TTL,
#: so a live entry never ages out between two checks).
REFRESH_AFTER = ENTRY_TTL / 3
#: Clusters a root names at most (the rest are counted).
MAX_NAMED = 10
#: Other clusters an incident keeps at most (the root counts those it does not name)
MAX_KEPT = 50
#: Entries of the index read at most (anyone may add fields to it), and their size (bytes):
#: a real entry is a few hundred bytes
MAX_READ = 200
MAX_ENTRY = 2048
#: A thread link longer than this is no permalink (chat.getPermalink's are ~100 characters)
MAX_LINK = 512

#: (channel, ts) → the message's permalink, or None when Slack cannot say now.
Linker = Callable[[str, str], str | None]


@dataclass(frozen=True)
class SharedEntry:
    """One cluster's incident of a shared cause, as the fleet index keeps it."""

    channel: str
    thread_ts: str
    permalink: str
    opened_at: float
    pods: int
    seen_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> SharedEntry | None:
        """None for an entry this version cannot read (it is then simply not shown)."""
        try:
            data = json.loads(raw)
            return cls(channel=str(data.get("channel", "")),
                       thread_ts=str(data.get("thread_ts", "")),
                       permalink=str(data.get("permalink") or ""),
                       opened_at=float(data.get("opened_at") or 0),
                       pods=int(data.get("pods") or 0),
                       seen_at=float(data.get("seen_at") or data.get("opened_at") or 0))
        except (ValueError, TypeError, AttributeError):
            return None


class SharedCauses:
    """This cluster's side of the fleet index of shared causes."""

    def __init__(self, fleet: Store, cluster: str, *, link: Linker | None = None,
                 ttl: float = ENTRY_TTL) -> None:
        self.fleet = fleet
        self.cluster = cluster
        self.link = link
        self.ttl = ttl

    def key(self, cause: Cause, scope: str) -> str:
        return self.fleet.key("shared", cause.value, scope)

    def permalink(self, channel: str, ts: str) -> str:
        """The thread's link for the other clusters ("" when Slack cannot give one now: they
        then show the cluster's name without a link)."""
        if self.link is None:
            return ""
        try:
            return self.link(channel, ts) or ""
        except Exception as exc:  # a courtesy: never lose the alert over a link
            log.warning("no permalink for %s/%s: %s", channel, ts, exc)
            return ""

    def publish(self, cause: Cause, scope: str, entry: SharedEntry) -> None:
        """Write (or re-write) this cluster's entry; the hash lives `ttl` past the last write."""
        try:
            self.fleet.hset(self.key(cause, scope), {self.cluster: entry.to_json()},
                            ttl=self.ttl)
        except StoreUnavailable as exc:
            log.warning("shared cause %s %s not published: %s", cause.value, scope, exc)

    def withdraw(self, cause: Cause, scope: str) -> None:
        """This cluster's incident resolved: the others drop it at their next check."""
        try:
            self.fleet.hdel(self.key(cause, scope), self.cluster)
        except StoreUnavailable as exc:
            log.warning("shared cause %s %s not withdrawn (it ages out): %s",
                        cause.value, scope, exc)

    def entries(self, cause: Cause, scope: str, now: float) -> dict[str, SharedEntry]:
        """Every cluster's live entry (this one's included), by cluster name: one bounded read
        (at most `MAX_READ` entries of at most `MAX_ENTRY` bytes; an entry cut short is not
        JSON any more, so it is not shown)."""
        live: dict[str, SharedEntry] = {}
        index = self.fleet.hgetall_cut(self.key(cause, scope), MAX_READ, MAX_ENTRY)
        for cluster, raw in index.items():
            entry = SharedEntry.from_json(raw)
            if entry is not None and now - entry.seen_at < self.ttl:
                live[cluster] = entry
        return live


def elsewhere(entries: dict[str, SharedEntry], cluster: str) -> dict[str, str]:
    """The other clusters (name → thread permalink, "" when unknown), as a root shows them.

    The index is written by every agent of the shared Redis, and anyone who can write to it:
    only names that are cluster names (DNS-1123 labels, as CLUSTER_NAME is) count, at most
    `MAX_KEPT` of them (the root names `MAX_NAMED` and counts the rest; the incident keeps
    this map, so a flood of fake clusters would otherwise grow every shared incident's record
    and its edits without end), and a link longer than any permalink is dropped (whether it
    is a Slack permalink at all is decided where it becomes a link, bot/slack/text.py)."""
    others = [(name, e) for name, e in sorted(entries.items())
              if name != cluster and is_dns1123_label(name)]
    return {name: (e.permalink if len(e.permalink) <= MAX_LINK else "")
            for name, e in others[:MAX_KEPT]}
