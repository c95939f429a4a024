"""Incidents: what a person gets paged about, grouped and deduplicated in the store.

An incident's key is cluster + cause + scope. Scope is the workload for causes that belong to
one workload (a bad tag, a missing secret) and the registry host for causes that hit whoever
pulls from it (429, DNS, network, TLS): one registry outage is one alert listing every affected
workload. Timing follows Alertmanager: `group_wait` gathers a storm before the first post,
`group_interval` bounds thread updates, `repeat_interval` reminds while unresolved.

Replicas and restarts agree through the store alone: joining an incident is idempotent
(SET NX on the active key, HSETNX on members) and every Slack post happens under a claim,
after re-reading the incident. Each message has a name within its incident (its *part*:
`root`, `update:N`, `remind:N`, `resolved`, numbered from counters kept in the incident), and
the Notifier posts a part at most once however often it is asked: when a replica dies, times
out or loses its store write after Slack stored the message, the next attempt of the same part
finds that message instead of posting another (see bot/slack/notifier.py).

An incident keeps the diagnosis it was opened with (`IncidentDiagnosis`: the first failing
container's, and the pod it was seen in) as the diagnosis JSON contract, so the record reads
back typed in any later version, and a record written by an earlier one still loads.

The registry's answers come after the alert (issue 10, Deliver 3): a pod is observed first
with the API's facts, and again once the registry was asked (`observe(..., registry=...)`).
A diagnosis that knows more replaces the incident's: each *depth* (`Depth`: the kubelet's
facts, the registry unreachable, the registry's answer) is stored once per incident, the first
writer's (HSETNX `diagnosis:<depth>`), and the deepest one is the incident's diagnosis. The
root message shows it: posted within group_wait, the root simply goes out with it; posted
before, the root is edited once per deeper diagnosis (`refresh`, under the incident's claim
like every other Slack write, and recorded as `root_depth`): one edit, not one per pod or
per replica.

Several clusters sharing one Redis (issue 13): an incident of a shared cause (scope: the
registry host) is written into the fleet index of bot/alerts/shared_causes.py when its root is
posted and withdrawn when it resolves; its root names the other clusters failing on the same
cause and registry (`elsewhere`), read once per group_interval per process and edited (one
`elsewhere` action under the claim) only when that set changed.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from typing import Any, Protocol

from bot.alerts.shared_causes import REFRESH_AFTER, SharedCauses, SharedEntry, elsewhere
from bot.diagnosis.causes import CAUSES, Cause, Finding
from bot.diagnosis.cleared import CauseCleared, QuotaFigure
from bot.diagnosis.facts import RegistryFacts
from bot.diagnosis.imageref import try_parse_image
from bot.diagnosis.model import ContainerDiagnosis, PodDiagnosis
from bot.metrics import Metrics
from bot.store import Store

log = logging.getLogger(__name__)

#: Incident ids as `new_incident_id` mints them. Ids that come back from clients (an alert
#: button's value) are checked against this before any store key is built from them, so a
#: crafted value (`inc-…:announced`) can never name a key of another type.
INCIDENT_ID = re.compile(r"inc-[0-9a-f]{12}")
#: How long resolved incidents stay readable (threads, buttons, audit) in the store.
RESOLVED_RETENTION = 7 * 24 * 3600.0
#: Field of the incident hash set by versions that keep, per pod, the member ids it has in
#: the incident (`incident:<id>:pod:<ns>:<pod>`, listed in `incident:<id>:pods`).
MEMBER_INDEX = "member_index"
#: Incidents whose static fields a process remembers having written (ids, LRU).
COMPLETE_MEMO = 10_000
#: Longest the tick trusts an incident it found quiet without loading it again (seconds).
QUIET_RECHECK = 30.0
#: Workloads an incident remembers by name for the history (the ones with the most pods).
PEAK_WORKLOADS = 20


class Depth(IntEnum):
    """How much a diagnosis knows beyond the kubelet: deeper ones replace shallower ones."""

    KUBELET = 0  # the API's facts (the first look; no registry probe, or none needed)
    UNREACHABLE = 1  # the registry was asked and did not answer the bot: that is evidence
    REGISTRY = 2  # the registry answered

    @classmethod
    def of(cls, facts: RegistryFacts | None) -> Depth:
        if facts is None or not (facts.answered or facts.probe_summary):
            return cls.KUBELET
        return cls.REGISTRY if facts.answered else cls.UNREACHABLE


def _diagnosis_field(depth: Depth) -> str:
    """The incident hash field of a diagnosis of this depth (`diagnosis`: the first one
    stored, whatever its depth, as every version reads it)."""
    return f"diagnosis:{int(depth)}"


@dataclass(frozen=True)
class Timing:
    """Alertmanager-style timing, in seconds."""

    group_wait: float = 10.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0
    claim_ttl: float = 120.0


@dataclass(frozen=True)
class Member:
    """One failing container of one pod in an incident."""

    namespace: str
    pod: str
    container: str
    image: str
    workload_kind: str
    workload_name: str
    since: float

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}"

    @property
    def workload(self) -> str:
        return f"{self.namespace}/{self.workload_kind.lower()}/{self.workload_name}"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Member:
        return cls(**json.loads(raw))


@dataclass(frozen=True, kw_only=True)
class IncidentDiagnosis(ContainerDiagnosis):
    """The diagnosis an incident was opened with: one container's, and where it was seen.

    Stored as `ContainerDiagnosis.to_json()` plus "namespace" and "pod" (the shape incidents
    have always had), so `from_json` also reads records written before this class existed.
    """

    namespace: str
    pod: str

    @classmethod
    def of(cls, entry: ContainerDiagnosis, namespace: str, pod: str) -> IncidentDiagnosis:
        return cls(**{f.name: getattr(entry, f.name) for f in fields(ContainerDiagnosis)},
                   namespace=namespace, pod=pod)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "namespace": self.namespace, "pod": self.pod}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentDiagnosis:
        entry = ContainerDiagnosis.from_json(data)
        if "suggested_image" not in data:
            entry = replace(entry, suggested_image=_legacy_suggested_image(entry))
        return cls.of(entry, str(data.get("namespace", "")), str(data.get("pod", "")))


def _legacy_suggested_image(entry: ContainerDiagnosis) -> str | None:
    """The suggestion of a record stored before `suggested_image` was a key: then it lived only
    in the first fix (`kubectl set image KIND/NAME CONTAINER=IMAGE`), and an alert posted by
    that version keeps its "Set image" button working after an upgrade. New records never
    come here."""
    if not {Finding.TAG_SUGGESTION, Finding.SWAPPED_PATH,
            Finding.REGISTRY_HOST_TYPO} & set(entry.findings) or not entry.fixes:
        return None
    for word in entry.fixes[0].command.split():
        if word.startswith(f"{entry.container}="):
            return word.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class Cleared:
    """The incident's cause went away while it was open (issue 12, Deliver 1): what changed,
    when the bot saw it, and when the kubelet would pull again on its own (None: it never
    would, only new pods get the fix; or its schedule is unknown)."""

    at: float
    change: CauseCleared
    kubelet_retry_at: float | None

    def to_json(self) -> str:
        c = self.change
        return json.dumps({"at": self.at, "kind": c.kind, "namespace": c.namespace,
                           "secret": c.secret, "account": c.account, "image": c.image,
                           "registry": c.registry, "node": c.node,
                           "quotas": [[q.account, q.remaining, q.limit, q.pods]
                                      for q in c.quotas],
                           "kubelet_retry_at": self.kubelet_retry_at}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> Cleared | None:
        """None for a missing or unreadable record (a change is then simply not shown)."""
        try:
            data = json.loads(raw) if raw else None
            if not isinstance(data, dict):
                return None
            retry = data.get("kubelet_retry_at")
            return cls(float(data["at"]),
                       CauseCleared(str(data["kind"]), str(data.get("namespace", "")),
                                    str(data.get("secret", "")), str(data.get("account", "")),
                                    str(data.get("image", "")),
                                    str(data.get("registry", "")),
                                    str(data.get("node", "")),
                                    _quotas(data.get("quotas"))),
                       None if retry is None else float(retry))
        except (ValueError, KeyError, TypeError):
            return None


def _quotas(raw: object) -> tuple[QuotaFigure, ...]:
    """The quota figures of a QUOTA_BACK record ([account, remaining, limit, pods] each)."""
    if not isinstance(raw, list):
        return ()
    return tuple(QuotaFigure(str(a), _int(r), _int(lim), int(p)) for a, r, lim, p in raw)


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


@dataclass
class Incident:
    """A snapshot of one incident as stored."""

    id: str
    key: str
    cluster: str
    cause: Cause
    scope_kind: str  # "workload" or "registry"
    scope: str
    state: str  # "pending", "open", "resolved"
    created_at: float
    diagnosis: IncidentDiagnosis
    members: dict[str, Member] = field(default_factory=dict)
    announced: set[str] = field(default_factory=set)
    recovered: dict[str, Member] = field(default_factory=dict)
    channel: str | None = None
    thread_ts: str | None = None
    root_posted_at: float | None = None
    last_update_at: float | None = None
    last_notified_at: float | None = None
    resolved_at: float | None = None
    updates: int = 0  # thread updates posted: the next one is part f"update:{updates + 1}"
    #: bumped by every change of members, announcements, depth or state (`IncidentManager`'s
    #: tick skips an incident whose version it has seen quiet)
    version: str = ""
    reminders: int = 0  # reminders posted
    depth: Depth = Depth.KUBELET  # of `diagnosis`
    root_depth: Depth = Depth.KUBELET  # of the diagnosis the root message shows
    #: workload → most pods seen failing at once, as of the last post (at most
    #: PEAK_WORKLOADS): a resolved incident has no members left, and its history keeps this
    peak: dict[str, int] = field(default_factory=dict)
    #: the cause went away while the incident was open (first sighting, across replicas)
    cleared: Cleared | None = None
    #: when the thread was told so (the "cleared" part)
    cleared_posted_at: float | None = None
    #: when an approved "Retry now" ran (the first one)
    retried_at: float | None = None
    #: seconds the approved retry saved: the kubelet's own next pull minus the time the pods
    #: ran (recorded at resolution; None without a retry or when it saved nothing)
    retry_saved: float | None = None
    #: other clusters with an open incident of the same shared cause and scope, as the root
    #: shows them: cluster name → their thread's permalink ("" when unknown); issue 13
    elsewhere: dict[str, str] = field(default_factory=dict)
    #: when the fleet index `elsewhere` shows was read: a replica whose own read is older
    #: never edits the root back to what it saw
    elsewhere_at: float | None = None
    #: the root's permalink, once asked for (what the other clusters link to)
    permalink: str | None = None

    @property
    def pods(self) -> set[str]:
        return {f"{m.namespace}/{m.pod}" for m in self.members.values()}

    @property
    def workloads(self) -> Counter[str]:
        """workload → number of failing pods."""
        return Counter(m.workload for m in {(m.namespace, m.pod): m
                                            for m in self.members.values()}.values())

    @property
    def transient(self) -> bool:
        return self.diagnosis.transient

    def peak_now(self) -> dict[str, int]:
        """`peak` with the current members counted in (the most pods per workload so far)."""
        merged = dict(self.peak)
        for workload, pods in self.workloads.items():
            merged[workload] = max(pods, merged.get(workload, 0))
        top = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:PEAK_WORKLOADS]
        return dict(top)


@dataclass(frozen=True)
class ResolvedIncident:
    """The compact record of a resolved incident that the history keeps for a week (what a
    digest reports: cause, scope, how long it took, how many pods and which workloads)."""

    id: str
    cause: Cause
    scope_kind: str
    scope: str
    created_at: float
    resolved_at: float
    pods: int
    workloads: dict[str, int]

    @property
    def took(self) -> float:
        return max(0.0, self.resolved_at - self.created_at)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "cause": self.cause.value,
                           "scope_kind": self.scope_kind, "scope": self.scope,
                           "created_at": self.created_at, "resolved_at": self.resolved_at,
                           "pods": self.pods, "workloads": self.workloads}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> ResolvedIncident:
        data = json.loads(raw)
        return cls(id=str(data["id"]), cause=Cause(data["cause"]),
                   scope_kind=str(data.get("scope_kind", "workload")),
                   scope=str(data.get("scope", "")), created_at=float(data["created_at"]),
                   resolved_at=float(data["resolved_at"]), pods=int(data.get("pods", 0)),
                   workloads={str(k): int(v) for k, v in (data.get("workloads") or {}).items()})


def _elsewhere(raw: str | None) -> dict[str, str]:
    try:
        data = json.loads(raw) if raw else {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (ValueError, TypeError):
        return {}


def _peak(raw: str | None) -> dict[str, int]:
    try:
        data = json.loads(raw) if raw else {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (ValueError, TypeError):
        return {}


def retry_saved(incident: Incident, ran_at: float) -> float | None:
    """How long an approved "Retry now" saved: the kubelet's own next pull (after the fix)
    minus when the pods ran (`ran_at`); None without a retry, or when it saved nothing."""
    cleared = incident.cleared
    if incident.retried_at is None or cleared is None or cleared.kubelet_retry_at is None:
        return None
    saved = cleared.kubelet_retry_at - ran_at
    return saved if saved > 0 else None


def new_incident_id() -> str:
    return f"inc-{uuid.uuid4().hex[:12]}"


class NotifyError(RuntimeError):
    """Posting failed for now (Slack down, rate-limited past our patience): try next tick."""


class Notifier(Protocol):
    """Posts an incident's messages. `part` names the message within its incident; a part
    is posted at most once however often it is asked for (a repeat after a lost answer or a
    lost record adopts the message Slack already has). The caller holds the incident's claim."""

    def post_root(self, incident: Incident, part: str) -> tuple[str, str]:
        """Post the root message; return (channel id, ts)."""

    def post_update(self, incident: Incident, new: list[Member],
                    recovered: list[Member], part: str) -> None: ...

    def post_reminder(self, incident: Incident, now: float, part: str) -> None: ...

    def post_resolved(self, incident: Incident, part: str) -> None: ...

    def post_cleared(self, incident: Incident, part: str) -> None:
        """Say in the thread that the cause went away (`incident.cleared`), when the kubelet
        retries by itself, and offer to retry now."""

    def edit_root(self, incident: Incident) -> None:
        """Show the incident as it is now in its posted root (an idempotent edit); NotifyError
        when Slack cannot take it now (the edit stays due)."""

    def posted(self, incident: Incident, part: str) -> tuple[str, str] | None:
        """(channel id, ts) of `part` if it was ever sent and Slack has it, else None."""


def incident_scope(entry: ContainerDiagnosis, namespace: str) -> tuple[str, str]:
    """("registry", host) for shared causes, ("workload", "ns/kind/name") otherwise."""
    if CAUSES[entry.cause].shared_scope:
        ref = try_parse_image(entry.image)
        if ref is not None:
            return "registry", ref.registry
    return "workload", f"{namespace}/{entry.workload.kind.lower()}/{entry.workload.name}"


class IncidentManager:
    """Joins diagnoses into incidents and does the due Slack work under claims."""

    def __init__(self, store: Store, notifier: Notifier, *, cluster: str = "default",
                 timing: Timing | None = None, owner: str | None = None,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 shared: SharedCauses | None = None) -> None:
        self.store = store
        #: the fleet index of shared causes (None: one cluster, no Redis; nothing is shared)
        self.shared = shared
        #: incident id → (read at, other clusters → permalink, own entry fresh): what this
        #: process last read of the fleet index for an open shared incident (once per
        #: group_interval: one HGETALL)
        self._shared_seen: dict[str, tuple[float, dict[str, str], bool]] = {}
        self.notifier = notifier
        self.cluster = cluster
        self.timing = timing or Timing()
        self.owner = owner or f"bot-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.metrics = metrics
        #: incident id → (version, re-check at): incidents the tick found with nothing due;
        #: until that version changes or that time comes, the tick reads one field of them
        self._quiet: dict[str, tuple[str | None, float]] = {}
        #: incidents whose static fields this process has written (no need to write again)
        self._complete: OrderedDict[str, None] = OrderedDict()

    # -- keys ---------------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return self.store.key(*parts)

    def _active_set(self) -> str:
        return self._k("incidents", "active")

    def _history(self) -> str:
        return self._k("incidents", "resolved")

    def _pod_index(self, namespace: str, pod: str) -> str:
        return self._k("pod", namespace, pod)

    # -- intake -------------------------------------------------------------------------------

    def observe(self, result: PodDiagnosis, now: float | None = None, *,
                registry: Mapping[str, RegistryFacts] | None = None) -> list[str]:
        """Join each failing container of the pod to its incident; returns incident ids.
        `registry`: what the registry answered per image, when it was asked (the diagnosis
        is then deeper than the kubelet's and replaces a shallower one, see `Depth`)."""
        now = self.clock() if now is None else now
        touched: list[str] = []
        current: dict[str, str] = {}  # member id → incident id
        for entry in result.diagnoses:
            scope_kind, scope = incident_scope(entry, result.namespace)
            key = f"{self.cluster}|{entry.cause.value}|{scope}"
            depth = Depth.of((registry or {}).get(entry.image))
            incident_id = self._join(key, entry, result, scope_kind, scope, now, depth)
            member = Member(result.namespace, result.pod, entry.container, entry.image,
                            entry.workload.kind, entry.workload.name, now)
            members_key = self._k("incident", incident_id, "members")
            # The pod's member set first, the member second: whenever the member is stored,
            # its id is in the set (a crash in between leaves an id without a member, which
            # `_drop_stale_members` reads as absent). Ids are never removed from the set, so
            # no replica's removal can race another's join out of it; it holds at most the
            # containers this pod ever had in this incident, and expires with the incident.
            self._index_member(incident_id, result.namespace, result.pod, member.id)
            if self.store.hsetnx(members_key, member.id, member.to_json()):
                log.info("incident %s: %s joins (%s)", incident_id, member.id, entry.cause)
                self.store.hdel(self._k("incident", incident_id, "recovered"), member.id)
                self._changed(incident_id)
            self.store.sadd(self._pod_index(result.namespace, result.pod), incident_id)
            current[member.id] = incident_id
            touched.append(incident_id)
        self._drop_stale_members(result.namespace, result.pod, current)
        return touched

    def cause_cleared(self, incident_id: str, change: CauseCleared,
                      kubelet_retry_at: float | None, now: float | None = None) -> bool:
        """Record that the incident's cause went away (the first sighting wins, across
        replicas: HSETNX); the tick then posts it in the thread. True if recorded now."""
        now = self.clock() if now is None else now
        record = Cleared(now, change, kubelet_retry_at)
        if not self.store.hsetnx(self._k("incident", incident_id), "cleared", record.to_json()):
            return False
        log.info("incident %s: its cause went away (%s %s/%s)", incident_id, change.kind,
                 change.namespace, change.secret)
        self._changed(incident_id)
        return True

    def quota_seen_low(self, incident_id: str) -> None:
        """The bot's own IP's Docker Hub quota was read spent while this rate-limited incident
        was open: evidence that the failing nodes share it (bot/routines/cleared.py says an
        anonymous quota is back only after that). Not a change the tick acts on."""
        self.store.hset(self._k("incident", incident_id), {"quota_low": "1"})

    def reprobed(self, incident_id: str, probes: int, at: float) -> None:
        """The registry was asked again about the incident's image (`probes` times so far,
        the last at `at`): the schedule of the next question (bot/routines/cleared.py). Not a
        change the tick acts on, so the version stays."""
        self.store.hset(self._k("incident", incident_id), {"reprobe": f"{probes} {at!r}"})

    def retried(self, incident_id: str, now: float | None = None) -> None:
        """An approved "Retry now" ran for the incident (the first one counts)."""
        if not INCIDENT_ID.fullmatch(incident_id):
            return
        now = self.clock() if now is None else now
        self.store.hsetnx(self._k("incident", incident_id), "retried_at", repr(now))

    def pod_recovered(self, namespace: str, pod: str) -> None:
        """The pod runs (or is gone): it leaves every incident it was in."""
        self._drop_stale_members(namespace, pod, {})

    def member_pods(self) -> set[tuple[str, str]]:
        """(namespace, pod) of every member of every active incident, read from the member
        ids alone (`Member.id` is namespace/pod/container: no member is decoded), for the
        sweep's consistency check."""
        pods: set[tuple[str, str]] = set()
        for incident_id in self.active_ids():
            if not INCIDENT_ID.fullmatch(incident_id):
                continue
            for member_id in self.store.hgetall(self._k("incident", incident_id, "members")):
                namespace, _, rest = member_id.partition("/")
                pod, _, _ = rest.partition("/")
                pods.add((namespace, pod))
        return pods

    def in_incident(self, namespace: str, pod: str) -> bool:
        """Whether the pod is (or may still be) a member of an active incident: one read of
        its index, so a signal that could only resolve it is skipped when there is nothing to
        resolve."""
        return bool(self.store.smembers(self._pod_index(namespace, pod)))

    def _join(self, key: str, entry: ContainerDiagnosis, result: PodDiagnosis,
              scope_kind: str, scope: str, now: float, depth: Depth = Depth.KUBELET) -> str:
        active_key = self._k("active", key)
        candidate = new_incident_id()
        if self.store.set_nx(active_key, candidate):
            incident_id = candidate
        else:
            incident_id = self.store.get(active_key) or candidate
            if incident_id == candidate:  # the key vanished in between: take it
                self.store.put(active_key, candidate)
        hkey = self._k("incident", incident_id)
        diagnosis = IncidentDiagnosis.of(entry, result.namespace, result.pod).to_json()
        static = {"id": incident_id, "key": key, "cluster": self.cluster,
                  "cause": entry.cause.value, "scope_kind": scope_kind, "scope": scope,
                  "state": "pending", "created_at": repr(now),
                  "diagnosis": json.dumps(diagnosis)}
        if incident_id == candidate:
            # Opened by this version: every member it ever has is in a per-pod member set.
            # Incidents opened before (no such field) keep being searched by a scan.
            static[MEMBER_INDEX] = "1"
        if incident_id not in self._complete:
            # static fields never change once written (HSETNX): one round trip, once per
            # incident and process, not once per pod of a storm
            self.store.hsetnx_many(hkey, static)
            self._complete[incident_id] = None
            while len(self._complete) > COMPLETE_MEMO:
                self._complete.popitem(last=False)
        if depth > Depth.KUBELET and self.store.hsetnx(hkey, _diagnosis_field(depth),
                                                       static["diagnosis"]):
            log.info("incident %s: the registry's answer refines its diagnosis (%s)",
                     incident_id, depth.name.lower())
            self._changed(incident_id)
        self.store.sadd(self._active_set(), incident_id)
        return incident_id

    def _changed(self, incident_id: str) -> None:
        """Something the tick decides on changed: every replica's tick looks again."""
        self.store.hincrby(self._k("incident", incident_id), "version")

    def _pod_members_key(self, incident_id: str, namespace: str, pod: str) -> str:
        return self._k("incident", incident_id, "pod", namespace, pod)

    def _index_member(self, incident_id: str, namespace: str, pod: str, member_id: str) -> None:
        """Record that `member_id` (of this pod) is or was a member of the incident."""
        pod_key = self._pod_members_key(incident_id, namespace, pod)
        self.store.sadd(self._k("incident", incident_id, "pods"), pod_key)  # for `_retire`
        self.store.sadd(pod_key, member_id)

    def _pod_members(self, incident_id: str, namespace: str,
                     pod: str) -> dict[str, str]:
        """This pod's members of the incident (member id → stored JSON).

        Reads the pod's member set and HMGETs only those fields, so a recovery costs the
        same in a 2,000-member incident as in a 1-member one. An incident opened by an earlier
        version (no MEMBER_INDEX field) or a pod without a member set (a member joined by an
        earlier replica during a rolling upgrade) falls back to reading the whole hash."""
        members_key = self._k("incident", incident_id, "members")
        [indexed] = self.store.hmget(self._k("incident", incident_id), MEMBER_INDEX)
        ids = (sorted(self.store.smembers(self._pod_members_key(incident_id, namespace, pod)))
               if indexed else [])
        if not ids:
            prefix = f"{namespace}/{pod}/"
            return {mid: raw for mid, raw in self.store.hgetall(members_key).items()
                    if mid.startswith(prefix)}
        return {mid: raw for mid, raw in zip(ids, self.store.hmget(members_key, *ids),
                                             strict=True) if raw is not None}

    def _drop_stale_members(self, namespace: str, pod: str, current: dict[str, str]) -> None:
        """Members of this pod that are no longer failing (or moved cause) leave."""
        index = self._pod_index(namespace, pod)
        for incident_id in self.store.smembers(index):
            members = self._pod_members(incident_id, namespace, pod)
            stale = [mid for mid in members if current.get(mid) != incident_id]
            if stale:
                self.store.hdel(self._k("incident", incident_id, "members"), *stale)
                recovered = self._k("incident", incident_id, "recovered")
                self.store.hset(recovered, {mid: members[mid] for mid in stale})
                self._changed(incident_id)
                log.info("incident %s: %s recovered or moved", incident_id, ", ".join(stale))
            if incident_id not in current.values():
                self.store.srem(index, incident_id)

    # -- reading --------------------------------------------------------------------------------

    def active_ids(self) -> set[str]:
        return self.store.smembers(self._active_set())

    def load(self, incident_id: str, *, members: bool = True) -> Incident | None:
        """The stored incident; None when there is none (or the id is not one the bot mints).
        `members` False: the record alone, without its members, recovered and announced ones
        (empty): one read, whatever the incident's size, for a routine that needs only its
        diagnosis and state."""
        if not INCIDENT_ID.fullmatch(incident_id):
            return None
        raw = self.store.hgetall(self._k("incident", incident_id))
        if not raw.get("key"):
            return None

        def number(name: str) -> float | None:
            return float(raw[name]) if raw.get(name) else None

        def read(part: str) -> dict[str, Member]:
            if not members:
                return {}
            return {mid: Member.from_json(v) for mid, v in
                    self.store.hgetall(self._k("incident", incident_id, part)).items()}

        depth = max((d for d in Depth if raw.get(_diagnosis_field(d))), default=Depth.KUBELET)
        stored = raw.get(_diagnosis_field(depth)) or raw.get("diagnosis") or "{}"
        return Incident(
            id=incident_id, key=raw["key"], cluster=raw.get("cluster", self.cluster),
            cause=Cause(raw["cause"]), scope_kind=raw.get("scope_kind", "workload"),
            scope=raw.get("scope", ""), state=raw.get("state", "pending"),
            created_at=float(raw.get("created_at") or 0),
            diagnosis=IncidentDiagnosis.from_json({"cause": raw["cause"], **json.loads(stored)}),
            depth=depth, root_depth=Depth(int(raw.get("root_depth") or 0)),
            members=read("members"), recovered=read("recovered"),
            announced=self.store.smembers(self._k("incident", incident_id, "announced"))
            if members else set(),
            channel=raw.get("channel") or None, thread_ts=raw.get("thread_ts") or None,
            root_posted_at=number("root_posted_at"), last_update_at=number("last_update_at"),
            last_notified_at=number("last_notified_at"), resolved_at=number("resolved_at"),
            updates=int(raw.get("updates") or 0), reminders=int(raw.get("reminders") or 0),
            version=raw.get("version") or "", peak=_peak(raw.get("peak")),
            cleared=Cleared.from_json(raw.get("cleared")),
            cleared_posted_at=number("cleared_posted_at"), retried_at=number("retried_at"),
            retry_saved=number("retry_saved"), elsewhere=_elsewhere(raw.get("elsewhere")),
            permalink=raw.get("permalink") or None, elsewhere_at=number("elsewhere_at"))

    def head(self, incident_id: str, *names: str) -> dict[str, str | None] | None:
        """A few fields of the incident's record (one HMGET, no members): for a routine that
        looks at every open incident and needs most of them only to skip them."""
        if not INCIDENT_ID.fullmatch(incident_id):
            return None
        return dict(zip(names, self.store.hmget(self._k("incident", incident_id), *names),
                        strict=True))

    def resolved_since(self, since: float) -> list[ResolvedIncident]:
        """Incidents resolved at or after `since` (at most a week back: RESOLVED_RETENTION),
        oldest first, from the history `_do_resolve` writes; unreadable records are skipped."""
        found: dict[str, ResolvedIncident] = {}  # by id: the latest record of each
        for raw, _ in self.store.zrange_by_score(self._history(), since):
            try:
                record = ResolvedIncident.from_json(raw)
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable record of the incident history")
                continue
            found.pop(record.id, None)
            found[record.id] = record
        return list(found.values())

    # -- the due work -------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Do what is due for every active incident: root, update, reminder, resolution."""
        now = self.clock() if now is None else now
        active = self.active_ids()
        for gone in [i for i in self._quiet if i not in active]:
            del self._quiet[gone]
        for gone in [i for i in self._shared_seen if i not in active]:
            del self._shared_seen[gone]
        for incident_id in sorted(active):
            quiet = self._quiet.get(incident_id)
            if quiet is not None and now < quiet[1]:
                # nothing was due at this version: one field read, not every member
                [version] = self.store.hmget(self._k("incident", incident_id), "version")
                if version == quiet[0]:
                    continue
            incident = self.load(incident_id)
            if incident is None:
                self.store.srem(self._active_set(), incident_id)
                self._quiet.pop(incident_id, None)
                continue
            self._look_elsewhere(incident, now)
            action = self._due(incident, now)
            if action is None:
                self._quiet[incident_id] = (incident.version or None,
                                            self._next_check(incident, now))
                continue
            self._quiet.pop(incident_id, None)
            self._under_claim(incident_id, action, now)

    def _next_check(self, incident: Incident, now: float) -> float:
        """When time alone could make something due for an incident found quiet (a root after
        group_wait, an update after group_interval, a reminder): until then, and until its
        version changes, the tick does not load it. At most `QUIET_RECHECK` seconds, so a
        change written by a replica of an earlier version (which does not bump the version)
        is seen within that."""
        t = self.timing
        times = [now + QUIET_RECHECK]
        if incident.state == "pending":
            times.append(incident.created_at + t.group_wait)
        elif incident.state == "open":
            times.append((incident.last_update_at or 0) + t.group_interval)
            times.append((incident.last_notified_at or 0) + t.repeat_interval)
            seen = self._shared_seen.get(incident.id)
            if seen is not None:
                times.append(seen[0] + t.group_interval)
        return min(times)

    def _due(self, incident: Incident, now: float) -> str | None:
        t = self.timing
        if incident.state == "pending":
            if not incident.members:
                return "discard"
            return "root" if now - incident.created_at >= t.group_wait else None
        if incident.state != "open":
            return None
        if not incident.members:
            return "resolve"
        if incident.depth > incident.root_depth:
            return "refresh"  # the registry answered after the root went out
        if incident.cleared is not None and incident.cleared_posted_at is None:
            return "cleared"  # the cause went away: say so (and offer Retry now) once
        changed = bool(set(incident.members) - incident.announced or incident.recovered)
        if changed and now - (incident.last_update_at or 0) >= t.group_interval:
            return "update"
        seen = self._shared_seen.get(incident.id)
        if seen is not None and (not seen[2] or (seen[1] != incident.elsewhere
                                                 and seen[0] > (incident.elsewhere_at or 0))):
            return "elsewhere"  # another cluster joined or left, or our entry needs writing
        if now - (incident.last_notified_at or 0) >= t.repeat_interval:
            return "remind"
        return None

    def _under_claim(self, incident_id: str, action: str, now: float) -> None:
        claim = f"incident:{incident_id}"
        if not self.store.claim(claim, self.owner, self.timing.claim_ttl):
            return  # another replica is on it
        try:
            incident = self.load(incident_id)  # re-read under the claim: it may be done
            if incident is None or self._due(incident, now) != action:
                return
            getattr(self, f"_do_{action}")(incident, now)
            if self.metrics is not None and action != "discard":
                self.metrics.posts.labels(action).inc()
        except NotifyError as exc:
            log.warning("incident %s: %s postponed: %s", incident_id, action, exc)
            if self.metrics is not None:
                self.metrics.post_failures.inc()
        finally:
            self.store.release(claim, self.owner)

    def _set(self, incident: Incident, **fields: object) -> None:
        self.store.hset(self._k("incident", incident.id),
                        {k: "" if v is None else (repr(v) if isinstance(v, float) else str(v))
                         for k, v in fields.items()})
        self._changed(incident.id)

    def _announce(self, incident: Incident, members: Iterable[str]) -> None:
        ids = list(members)
        if ids:
            self.store.sadd(self._k("incident", incident.id, "announced"), *ids)
        if incident.recovered:
            self.store.hdel(self._k("incident", incident.id, "recovered"),
                            *incident.recovered)

    def _do_root(self, incident: Incident, now: float) -> None:
        shared = self._is_shared(incident)
        if shared:  # the root goes out already naming the other clusters
            incident.elsewhere = self._read_elsewhere(incident, now)[0]
        channel, ts = self.notifier.post_root(incident, "root")
        self._set(incident, state="open", channel=channel, thread_ts=ts, root_posted_at=now,
                  last_update_at=now, last_notified_at=now, root_depth=int(incident.depth),
                  peak=json.dumps(incident.peak_now(), sort_keys=True),
                  elsewhere=json.dumps(incident.elsewhere, sort_keys=True),
                  elsewhere_at=now if shared else None)
        self._announce(incident, incident.members)
        if shared:
            incident.channel, incident.thread_ts = channel, ts
            incident.root_posted_at = now
            self._publish(incident, now)
            self._shared_seen[incident.id] = (now, incident.elsewhere, True)

    # -- shared causes across clusters (issue 13) -----------------------------------------

    def _is_shared(self, incident: Incident) -> bool:
        return self.shared is not None and incident.scope_kind == "registry"

    def _read_elsewhere(self, incident: Incident,
                        now: float) -> tuple[dict[str, str], SharedEntry | None]:
        """The other clusters' live incidents of this cause and scope, and our own entry
        (one HGETALL of the fleet index)."""
        assert self.shared is not None
        entries = self.shared.entries(incident.cause, incident.scope, now)
        return elsewhere(entries, self.cluster), entries.get(self.cluster)

    def _look_elsewhere(self, incident: Incident, now: float) -> None:
        """Read the fleet index of an open shared incident, once per group_interval per
        process (`_due` then compares it with what the root shows)."""
        if not self._is_shared(incident) or incident.state != "open" or not incident.thread_ts:
            return
        seen = self._shared_seen.get(incident.id)
        if seen is not None and now < seen[0] + self.timing.group_interval:
            return
        others, own = self._read_elsewhere(incident, now)
        fresh = (own is not None and own.thread_ts == incident.thread_ts
                 and now - own.seen_at < REFRESH_AFTER and bool(own.permalink))
        self._shared_seen[incident.id] = (now, others, fresh)

    def _publish(self, incident: Incident, now: float) -> None:
        """Write this cluster's entry in the fleet index (the thread's permalink is asked of
        Slack once, and kept in the incident)."""
        assert self.shared is not None and incident.channel and incident.thread_ts
        link = incident.permalink or self.shared.permalink(incident.channel, incident.thread_ts)
        if link and link != incident.permalink:
            incident.permalink = link
            self.store.hset(self._k("incident", incident.id), {"permalink": link})
        self.shared.publish(incident.cause, incident.scope, SharedEntry(
            channel=incident.channel, thread_ts=incident.thread_ts, permalink=link,
            opened_at=incident.root_posted_at or incident.created_at,
            pods=len(incident.pods), seen_at=now))

    def _do_elsewhere(self, incident: Incident, now: float) -> None:
        """Re-write our entry if it is due, and edit the root when the other clusters
        changed (an edit in the edit lane, at most once per group_interval)."""
        checked, others, fresh = self._shared_seen[incident.id]
        if not fresh:
            self._publish(incident, now)
        if others != incident.elsewhere and checked > (incident.elsewhere_at or 0):
            incident.elsewhere = others
            self.notifier.edit_root(incident)
            self._set(incident, elsewhere=json.dumps(others, sort_keys=True),
                      elsewhere_at=checked)
        self._shared_seen[incident.id] = (checked, others, True)

    def _do_refresh(self, incident: Incident, now: float) -> None:
        """Edit the root to show the deeper diagnosis (once per depth)."""
        self.notifier.edit_root(incident)
        self._set(incident, root_depth=int(incident.depth))

    def _do_update(self, incident: Incident, now: float) -> None:
        """Post what changed. If `update:N` turns out to be in Slack already (an earlier
        attempt's answer was lost), members that joined since that attempt count as announced
        without a line of their own; the refreshed root still shows the full counts."""
        new = [m for mid, m in sorted(incident.members.items()) if mid not in incident.announced]
        number = incident.updates + 1
        self.notifier.post_update(incident, new, sorted(incident.recovered.values(),
                                                        key=lambda m: m.id),
                                  f"update:{number}")
        self._set(incident, last_update_at=now, last_notified_at=now, updates=number,
                  peak=json.dumps(incident.peak_now(), sort_keys=True))
        self._announce(incident, [m.id for m in new])

    def _do_cleared(self, incident: Incident, now: float) -> None:
        """The one "cause went away" line in the thread (part `cleared`: once, whichever
        replica's tick gets the claim)."""
        self.notifier.post_cleared(incident, "cleared")
        self._set(incident, cleared_posted_at=now)

    def _do_remind(self, incident: Incident, now: float) -> None:
        number = incident.reminders + 1
        self.notifier.post_reminder(incident, now, f"remind:{number}")
        self._set(incident, last_notified_at=now, reminders=number)

    def _do_resolve(self, incident: Incident, now: float) -> None:
        incident.resolved_at = now
        incident.retry_saved = retry_saved(incident, now)
        self.notifier.post_resolved(incident, "resolved")
        self._set(incident, state="resolved", resolved_at=now, retry_saved=incident.retry_saved)
        if self._is_shared(incident):
            assert self.shared is not None
            self.shared.withdraw(incident.cause, incident.scope)
            self._shared_seen.pop(incident.id, None)
        self._record_resolution(incident, now)
        self._retire(incident)

    def _record_resolution(self, incident: Incident, now: float) -> None:
        """One compact record in the history (a sorted set by resolution time, trimmed to
        RESOLVED_RETENTION as it is written), for the digest. A resolution recorded twice (a
        store write that failed after this one) is read back once (`resolved_since`)."""
        pods = len({mid.rsplit("/", 1)[0] for mid in incident.announced})
        record = ResolvedIncident(
            id=incident.id, cause=incident.cause, scope_kind=incident.scope_kind,
            scope=incident.scope, created_at=incident.created_at, resolved_at=now, pods=pods,
            workloads=incident.peak_now())
        self.store.zadd_trimmed(self._history(), record.to_json(), now,
                                keep_from=now - RESOLVED_RETENTION, ttl=RESOLVED_RETENTION)

    def _do_discard(self, incident: Incident, now: float) -> None:
        """Every pod recovered inside group_wait: nobody needs to hear about it, unless a root
        went out whose answer or record was lost (a timeout, a killed replica): then it is in
        the channel and gets its resolution like any posted incident."""
        where = self.notifier.posted(incident, "root")
        if where is not None:
            incident.channel, incident.thread_ts = where
            self._set(incident, state="open", channel=where[0], thread_ts=where[1],
                      root_posted_at=now, last_update_at=now, last_notified_at=now)
            self._do_resolve(incident, now)
            return
        log.info("incident %s recovered before it was posted; discarded", incident.id)
        self._retire(incident)
        self.store.delete(self._k("incident", incident.id),
                          self._k("incident", incident.id, "posts"))

    def _retire(self, incident: Incident) -> None:
        self.store.srem(self._active_set(), incident.id)
        self.store.delete_if_equals(self._k("active", incident.key), incident.id)
        pods = self._k("incident", incident.id, "pods")
        for pod_key in self.store.smembers(pods):  # the per-pod member sets
            self.store.expire(pod_key, RESOLVED_RETENTION)
        for suffix in ((), ("members",), ("announced",), ("recovered",), ("posts",),
                       ("pods",)):
            self.store.expire(self._k("incident", incident.id, *suffix), RESOLVED_RETENTION)
