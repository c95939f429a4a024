"""Where signals come from: the core/v1 event watch and the periodic pod sweep.

`EventWatcher` follows the kubelet's events with the shared list+watch loop
(bot/kube/reflector.py: resume, 410, bookmarks, idle reopen, back-off, health) and turns the
ones about image pulls into `PodSignal`s: "look at this pod (again)". It never diagnoses; the
consumer does, and deduplicates by incident, so a signal delivered twice costs one extra
diagnosis while a lost one costs a missed alert. Every rule below leans that way.

* **Resume.** The RV of every processed event and bookmark is kept in the store
  (``<prefix>:watch:rv:<namespace or *>``), with the time up to which the watcher has seen
  everything (``...:watch:seen:...``: the newest event time processed, or the time of a list or
  of a watch that ended with nothing left to send). A restarted bot watches from the RV:
  nothing is replayed, nothing in between is missed.
* **First start** (no stored RV): list, signal only events last seen within ``start_window``
  seconds, watch from the list's RV. Installing the bot into a cluster with an hour of old
  failures must not page anyone for all of them (kubewatch#88).
* **410 Gone** (the RV fell out of the apiserver's watch cache, e.g. after a long outage):
  relist and signal listed pull events last seen after ``min(seen - 2 min, now -
  start_window)`` — the older of the two cut-offs, so the gap's events are never lost, at the
  price of re-signalling some recent ones. The 2 minutes cover an event written late: the
  kubelet's recorder retries a failed write for up to 2 minutes (12 tries, 10 s apart, exactly
  when the apiserver is in trouble), and node clocks drift. Events this process already
  handled at the same resourceVersion are skipped, so a relist inside one run re-signals
  nothing; after a restart the recent ones may be signalled again, which the incident layer
  absorbs.
* **Drops** (reset, timeout, 5xx, bad gateway): reconnect from the last RV after a full-jitter
  exponential back-off (``backoff_base`` doubling to ``backoff_max``), reset once a stream
  works again. Nothing kills the thread; unexpected errors are logged and backed off too.
* **Stop** is checked between events and at least every ``idle_timeout`` seconds: a watch that
  delivers nothing for that long is reopened from the same RV (a cheap request served from the
  apiserver's watch cache).
* **Store outages** do not stop the watch: the RV stays in memory, persisting is retried at
  most once a second, and the outage is logged once.
* **Health** (for ``/readyz``): the time of the last contact with the API server — a list, a
  watch event or bookmark, a watch that ended normally — is kept. A healthy watch is in
  contact at least every ``idle_timeout`` seconds (it reopens a quiet stream then), and one
  recovering from a blip waits at most ``backoff_max`` before trying again; so no contact for
  ``stale_after`` seconds (by default the sum of the two plus 10 s), or a failure streak that
  long, means the bot is blind to new failures, and `health()` says so and why.

`PodSweeper` is the fallback for what events cannot say: events expire after about an hour
and the kubelet's spam filter drops some, but a pod stuck in ImagePullBackOff says so in its
status for as long as it is stuck.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.diagnosis.events import PULL_WAITING_REASONS, pull_event_kind, read_event
from bot.diagnosis.facts import parse_k8s_time
from bot.kube.client import KubeClient, KubeError
from bot.kube.reflector import Reflector
from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

__all__ = ["EventWatcher", "PodSignal", "PodSweeper", "pull_signal"]

#: How long before `last_seen` an event written in a gap may be stamped: client-go's recorder
#: retries a write 12 times, 10 s apart; plus some clock drift between nodes.
_LATE_WRITE: Final = timedelta(seconds=120)
#: Events remembered as processed (uid → the resourceVersion processed), to skip them on a
#: relist: about 270 bytes each, 5.4 MB at the cap (bench/view_memory.py).
_SEEN_LIMIT: Final = 20_000


@dataclass(frozen=True)
class PodSignal:
    """One observation that a pod should be (re)looked at."""

    namespace: str
    pod: str
    kind: str  # "pull_failure" | "pulled" | "sweep"
    reason: str  # event reason or waiting reason
    message: str
    observed_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def event_time(raw: Mapping[str, Any]) -> datetime | None:
    """When the event was last seen: lastTimestamp, series.lastObservedTime, eventTime (then
    firstTimestamp, creationTimestamp) — both core/v1 dialects."""
    return read_event(raw).last_seen


def pull_signal(raw_event: Mapping[str, Any]) -> PodSignal | None:
    """The signal in one core/v1 Event, or None if it is not the kubelet talking about an
    image pull of a pod.

    Which events are about pulls is `pull_event_kind`'s call (bot/diagnosis/events.py), the
    same rule the engine applies: ``pull_failure`` for the kubelet's failed pulls, ``pulled``
    when the pod may have recovered, nothing for CrashLoopBackOff or another component's
    events. The watcher only adds that the event must name a pod to look at.
    """
    involved = raw_event.get("involvedObject") or raw_event.get("regarding") or {}
    if involved.get("kind") != "Pod" or not involved.get("name"):
        return None
    event = read_event(raw_event)
    kind = pull_event_kind(event)
    if kind is None:
        return None
    namespace = involved.get("namespace") or (raw_event.get("metadata") or {}).get("namespace")
    return PodSignal(
        namespace=str(namespace or "default"),
        pod=str(involved["name"]),
        kind=kind,
        reason=event.reason,
        message=event.message,
        observed_at=event.last_seen or _now(),
    )


def _event_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(uid, resourceVersion) of an event: which event, and which version of it."""
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name")), str(meta.get("resourceVersion"))


class EventWatcher(Reflector):
    """Watches core/v1 events (one namespace or all) and calls `on_signal` for pull events.

    The list/watch loop, back-off and health are the shared `Reflector`'s; this class adds
    what events mean: signals, the first-start and after-a-gap cut-offs, the stored position.
    ``run(stop)`` blocks until ``stop`` is set; ``start()`` runs it in a daemon thread and
    ``stop()`` ends it. `on_signal` is called on the watcher's thread, in event order; an
    exception in it is logged and the watch goes on.
    """

    thread_name = "event-watcher"

    def __init__(
        self,
        kube: KubeClient,
        store: Store,
        on_signal: Callable[[PodSignal], None],
        *,
        namespace: str | None = None,
        start_window: float = 300.0,
        watch_timeout: int = 300,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        idle_timeout: float = 5.0,
        persist_interval: float = 1.0,
        stale_after: float | None = None,
        on_api_back: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(watch_timeout=watch_timeout, backoff_base=backoff_base,
                         backoff_max=backoff_max, idle_timeout=idle_timeout,
                         stale_after=stale_after, on_api_back=on_api_back)
        self.kube = kube
        self.store = store
        self.on_signal = on_signal
        self.namespace = namespace
        self.what = f'events in "{namespace}"' if namespace else "events in all namespaces"
        self.start_window = start_window
        self.persist_interval = persist_interval
        scope = namespace or "*"
        self.rv_key = store.key("watch", "rv", scope)
        self.seen_key = store.key("watch", "seen", scope)
        #: up to when this watcher has seen everything: the newest event time processed, or
        #: the time of a list or of a watch that ended with nothing left to send
        self.last_seen: datetime | None = None
        #: event uid → the resourceVersion last processed, least recently processed first: one
        #: entry per live event (a repeat replaces its entry; a deleted event leaves), at most
        #: _SEEN_LIMIT
        self._processed: OrderedDict[str, str] = OrderedDict()
        self._dirty = False  # the RV changed since it was saved
        self._seen_dirty = False  # only last_seen changed (saved with the RV, or on exit)
        self._last_persist = float("-inf")
        self._store_down = False
        #: unix time this watcher last received an event from its watch (None: not yet):
        #: the heartbeat's `last_watch_event_at` (a quiet cluster and a deaf watch differ)
        self.last_event_at: float | None = None

    # -- the reflector's hooks ------------------------------------------------------------------
    def list_objects(self) -> tuple[list[dict[str, Any]], str]:
        return self.kube.list_events(self.namespace)

    def open_watch(self, resource_version: str | None) -> Iterator[dict[str, Any]]:
        return self.kube.watch_events(self.namespace, resource_version, self.watch_timeout,
                                      idle_timeout=self.idle_timeout)

    def replace(self, items: Sequence[Any], resource_version: str) -> None:
        """Signal listed pull events last seen within ``start_window`` (first start) or, after
        a gap, since ``min(seen - 2 min, now - start_window)``; skip those already handled."""
        cutoff = _now() - timedelta(seconds=self.start_window)
        if self.last_seen is not None:  # a relist after a gap (410, or a restart)
            cutoff = min(cutoff, self.last_seen - _LATE_WRITE)
        for item in items:  # every listed pull, even before the cut-off: node evidence
            self.kube.node_pulls.record(item)
        self.kube.node_pulls.watched = True
        listed = sorted(((event_time(i), i) for i in items),
                        key=lambda p: p[0] or datetime.min.replace(tzinfo=UTC))
        self._listed_at = _now()
        emitted = 0
        for when, item in listed:
            if when is None or when < cutoff or self._already_processed(item):
                continue
            emitted += self._handle(item)
        log.info("listed %d %s at resourceVersion %s; %d signal(s) since %s",
                 len(items), self.what, resource_version, emitted,
                 cutoff.isoformat(timespec="seconds"))

    def listed(self) -> None:
        self._advance(self._listed_at)
        self._dirty = True
        self.persist(force=True)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        self.last_event_at = time.time()
        if kind in ("ADDED", "MODIFIED"):
            self.kube.node_pulls.record(obj)
            self._handle(obj)
        else:  # a deleted (expired) event says nothing new, and no relist will list it again
            self._processed.pop(_event_key(obj)[0], None)

    def rv_advanced(self) -> None:
        self._dirty = True

    def caught_up(self) -> None:
        self._advance(_now())  # the server had nothing more to send

    # -- signals --------------------------------------------------------------------------------
    def _handle(self, obj: Mapping[str, Any]) -> int:
        """Signal one event if it is about a pull; remember it as processed."""
        uid, rv = _event_key(obj)
        self._processed[uid] = rv
        self._processed.move_to_end(uid)
        while len(self._processed) > _SEEN_LIMIT:
            self._processed.popitem(last=False)
        when = event_time(obj)
        if when is not None:
            self._advance(when)
        signal = pull_signal(obj)
        if signal is None:
            return 0
        try:
            self.on_signal(signal)
        except Exception:
            log.exception("signal handler failed for pod %s/%s", signal.namespace, signal.pod)
        return 1

    def _advance(self, when: datetime) -> None:
        if self.last_seen is None or when > self.last_seen:
            self.last_seen = when
            self._seen_dirty = True

    def _already_processed(self, obj: Mapping[str, Any]) -> bool:
        uid, rv = _event_key(obj)
        return self._processed.get(uid) == rv

    @property
    def processed(self) -> Mapping[str, str]:
        """The events remembered as processed (uid → resourceVersion; metrics, tests)."""
        return self._processed

    # -- state ----------------------------------------------------------------------------------
    def load_state(self) -> None:
        try:
            self.resource_version = self.resource_version or self.store.get(self.rv_key)
            seen = self.store.get(self.seen_key)
        except StoreUnavailable as exc:
            log.warning("cannot read the watch position (%s): starting as on first install "
                        "(signals for events of the last %.0f s)", exc, self.start_window)
            return
        self.last_seen = self.last_seen or parse_k8s_time(seen)
        if self.resource_version:
            log.info("resuming the watch of %s from resourceVersion %s", self.what,
                     self.resource_version)

    def persist(self, force: bool = False) -> None:
        """Write the RV (and newest event time) if it changed, at most once per interval."""
        if self.resource_version is None or not (self._dirty or (force and self._seen_dirty)):
            return
        now = time.monotonic()
        if not force and now - self._last_persist < self.persist_interval:
            return
        self._last_persist = now
        try:
            self.store.put(self.rv_key, self.resource_version)
            if self.last_seen is not None:
                self.store.put(self.seen_key, self.last_seen.isoformat())
        except StoreUnavailable as exc:
            if not self._store_down:
                log.warning("cannot save the watch position (%s); keeping it in memory and "
                            "retrying", exc)
            self._store_down = True
            return
        if self._store_down:
            log.info("the store is back: watch position saved")
        self._store_down = False
        self._dirty = self._seen_dirty = False


class PodSweeper:
    """Lists pods and signals those with a container (init containers included) waiting in
    ErrImagePull / ImagePullBackOff / ErrImageNeverPull / InvalidImageName."""

    def __init__(self, kube: KubeClient, on_signal: Callable[[PodSignal], None], *,
                 namespaces: Sequence[str] | None = None) -> None:
        self.kube = kube
        self.on_signal = on_signal
        self.namespaces = list(namespaces) if namespaces else None
        self._failing = False  # the last sweep could not list: log once per outage

    def sweep(self) -> list[PodSignal]:
        """One pass: a signal per stuck pod (for its first stuck container, init containers
        first), handed to `on_signal` and returned. A namespace that cannot be listed is
        logged and skipped."""
        signals: list[PodSignal] = []
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        for namespace in scopes:
            try:
                pods = self.kube.list_pods(namespace)
            except KubeError as exc:
                log.log(logging.DEBUG if self._failing else logging.WARNING,
                        "pod sweep of %s skipped: %s", namespace or "all namespaces", exc)
                self._failing = True
                continue
            if self._failing:
                log.info("pod sweep of %s works again", namespace or "all namespaces")
            self._failing = False
            now = _now()
            for pod in pods:
                signal = stuck_pod_signal(pod, now)
                if signal is None:
                    continue
                signals.append(signal)
                try:
                    self.on_signal(signal)
                except Exception:
                    log.exception("signal handler failed for pod %s/%s", signal.namespace,
                                  signal.pod)
        return signals


def stuck_pod_signal(pod: Mapping[str, Any], now: datetime | None = None) -> PodSignal | None:
    """A ``sweep`` signal if a container of `pod` waits for its image, else None."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for st in status.get(key) or []:
            waiting = (st.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in PULL_WAITING_REASONS:
                return PodSignal(
                    namespace=str(meta.get("namespace") or "default"),
                    pod=str(meta.get("name")),
                    kind="sweep",
                    reason=reason,
                    message=str(waiting.get("message") or ""),
                    observed_at=now or _now(),
                )
    return None
