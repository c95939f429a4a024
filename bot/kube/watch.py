"""Where signals come from: the core/v1 event watch and the periodic pod sweep.

`EventWatcher` follows the kubelet's events the way a reflector does — list once, then watch
from the list's resourceVersion — and turns the ones about image pulls into `PodSignal`s:
"look at this pod (again)". It never diagnoses; the consumer does, and deduplicates by
incident, so a signal delivered twice costs one extra diagnosis while a lost one costs a missed
alert. Every rule below leans that way.

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
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.diagnosis.events import PULL_WAITING_REASONS, pull_event_kind, read_event
from bot.diagnosis.facts import parse_k8s_time
from bot.kube.client import KubeClient, KubeError
from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

__all__ = ["EventWatcher", "PodSignal", "PodSweeper", "pull_signal"]

#: How long before `last_seen` an event written in a gap may be stamped: client-go's recorder
#: retries a write 12 times, 10 s apart; plus some clock drift between nodes.
_LATE_WRITE: Final = timedelta(seconds=120)
#: (uid, resourceVersion) of recently processed events, to skip them on a relist.
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


class _Expired(Exception):
    """The watch's resourceVersion is gone (410): relist."""


class _StreamError(Exception):
    """The stream reported an error other than 410 (back off and reconnect)."""


class EventWatcher:
    """Watches core/v1 events (one namespace or all) and calls `on_signal` for pull events.

    ``run(stop)`` blocks until ``stop`` is set; ``start()`` runs it in a daemon thread and
    ``stop()`` ends it. `on_signal` is called on the watcher's thread, in event order; an
    exception in it is logged and the watch goes on.
    """

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
        self.kube = kube
        self.store = store
        self.on_signal = on_signal
        self.namespace = namespace
        self.start_window = start_window
        self.watch_timeout = watch_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.idle_timeout = idle_timeout
        self.persist_interval = persist_interval
        self._stale_after = stale_after
        scope = namespace or "*"
        self.rv_key = store.key("watch", "rv", scope)
        self.seen_key = store.key("watch", "seen", scope)
        self.resource_version: str | None = None
        #: up to when this watcher has seen everything: the newest event time processed, or
        #: the time of a list or of a watch that ended with nothing left to send
        self.last_seen: datetime | None = None
        self.failures = 0  # consecutive failed attempts (drives the back-off)
        self.relists = 0  # relists after 410 Gone, in total
        self._expired_in_row = 0
        self._processed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._dirty = False  # the RV changed since it was saved
        self._seen_dirty = False  # only last_seen changed (saved with the RV, or on exit)
        self._last_persist = float("-inf")
        self._store_down = False
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None  # monotonic
        self._last_contact: float | None = None  # monotonic: last answer from the API server
        self._failing_since: float | None = None  # monotonic: start of the failure streak
        #: why the last attempt failed (cleared by the next contact)
        self.last_error: str | None = None
        #: called when the API server answers again after failed attempts (the pipeline
        #: probes at once instead of waiting out its outage back-off)
        #: called when the API answers again after failures (the pipeline probes at once)
        self.on_api_back = on_api_back

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop_event.clear()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self.run, args=(self._stop_event,),
                                        name=f"event-watcher:{self.namespace or '*'}",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("event watcher did not stop within %.1f s", timeout)

    def run(self, stop: threading.Event) -> None:
        """List/watch until `stop` is set; never raises."""
        self._load_state()
        try:
            while not stop.is_set():
                try:
                    if self.resource_version is None:
                        self._relist(after_gap=self.last_seen is not None)
                    self._watch_once(stop)
                except _Expired:
                    self.relists += 1
                    self._expired_in_row += 1
                    log.info("watch of %s expired (410 Gone): relisting", self._what)
                    self.resource_version = None
                    if self._expired_in_row > 1:  # expired again before any event: no spin
                        self._back_off(stop, "the watch expired again")
                except KubeError as exc:
                    self._back_off(stop, str(exc))
                except Exception:
                    log.exception("event watcher: unexpected error on %s", self._what)
                    self._back_off(stop, "unexpected error")
                self._persist()
        finally:
            self._persist(force=True)

    @property
    def _what(self) -> str:
        return f'events in "{self.namespace}"' if self.namespace else "events in all namespaces"

    @property
    def name(self) -> str:
        """``watch of events in all namespaces`` (or of one namespace), for messages."""
        return f"watch of {self._what}"

    # -- health ---------------------------------------------------------------------------------
    @property
    def stale_after(self) -> float:
        """Seconds without contact (or of failing) after which the watch is not healthy."""
        if self._stale_after is not None:
            return self._stale_after
        return self.idle_timeout + self.backoff_max + 10.0

    @stale_after.setter
    def stale_after(self, seconds: float) -> None:
        self._stale_after = seconds

    def health(self, now: float | None = None) -> tuple[bool, str]:
        """(healthy, why): in contact with the API server within `stale_after` seconds and
        not failing for longer than that. A watcher that was never started is not judged."""
        if self._started_at is None:
            return True, "not started"
        if self._thread is not None and not self._thread.is_alive() \
                and not self._stop_event.is_set():
            return False, "the watch thread is not running"
        now = time.monotonic() if now is None else now
        why = f" ({self.last_error})" if self.last_error else ""
        since = self._last_contact if self._last_contact is not None else self._started_at
        if now - since > self.stale_after:
            never = " since start" if self._last_contact is None else ""
            return False, f"no contact for {now - since:.0f} s{never}{why}"
        if self._failing_since is not None and now - self._failing_since > self.stale_after:
            return False, f"failing for {now - self._failing_since:.0f} s{why}"
        return True, "ok"

    def _contact(self) -> None:
        """The API server answered."""
        self._last_contact = time.monotonic()
        if self.failures and self.on_api_back is not None:
            try:
                self.on_api_back()
            except Exception:
                log.exception("on_api_back failed")

    def _healthy(self) -> None:
        """A list or watch worked: the failure streak is over."""
        self._contact()
        self.failures = 0
        self._expired_in_row = 0
        self._failing_since = None
        self.last_error = None

    def _back_off(self, stop: threading.Event, why: str) -> None:
        self.failures += 1
        self.last_error = why
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        cap = min(self.backoff_max, self.backoff_base * 2 ** min(self.failures - 1, 30))
        delay = random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography
        level = logging.WARNING if self.failures in (1, 5) or self.failures % 20 == 0 else \
            logging.DEBUG
        log.log(level, "watch of %s interrupted (%s); reconnecting in %.2f s (attempt %d)",
                self._what, why, delay, self.failures)
        stop.wait(delay)

    # -- list and watch -------------------------------------------------------------------------
    def _relist(self, *, after_gap: bool) -> None:
        items, rv = self.kube.list_events(self.namespace)
        self._contact()
        cutoff = _now() - timedelta(seconds=self.start_window)
        if after_gap and self.last_seen is not None:
            cutoff = min(cutoff, self.last_seen - _LATE_WRITE)
        listed = sorted(((event_time(i), i) for i in items),
                        key=lambda p: p[0] or datetime.min.replace(tzinfo=UTC))
        listed_at = _now()
        emitted = 0
        for when, item in listed:
            if when is None or when < cutoff or self._already_processed(item):
                continue
            emitted += self._handle(item)
        log.info("listed %d %s at resourceVersion %s; %d signal(s) since %s",
                 len(items), self._what, rv, emitted, cutoff.isoformat(timespec="seconds"))
        self.resource_version = rv or None
        self._advance(listed_at)
        self._dirty = True
        self._persist(force=True)

    def _watch_once(self, stop: threading.Event) -> None:
        opened = time.monotonic()
        delivered = 0
        stream = self.kube.watch_events(self.namespace, self.resource_version,
                                        self.watch_timeout, idle_timeout=self.idle_timeout)
        try:
            for event in stream:
                self._contact()
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        raise _Expired()
                    raise _StreamError(f"watch ERROR {code} {obj.get('reason')}: "
                                       f"{obj.get('message')}")
                delivered += 1
                self._healthy()
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED"):
                    self._handle(obj)
                if rv and str(rv) != self.resource_version:
                    self.resource_version = str(rv)
                    self._dirty = True
                self._persist()
                if stop.is_set():
                    return
        except _StreamError as exc:
            self._back_off(stop, str(exc))
            return
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        # A clean end (server timeout, idle). Only an instantly empty stream counts against
        # the back-off: a server that closes every watch at once must not make us spin.
        if delivered == 0 and time.monotonic() - opened < 0.5:
            self._back_off(stop, "the watch ended at once")
        else:
            self._healthy()
            self._advance(_now())  # the server had nothing more to send

    def _handle(self, obj: Mapping[str, Any]) -> int:
        """Signal one event if it is about a pull; remember it as processed."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("uid") or meta.get("name")), str(meta.get("resourceVersion")))
        self._processed[key] = None
        self._processed.move_to_end(key)
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
        meta = obj.get("metadata") or {}
        key = (str(meta.get("uid") or meta.get("name")), str(meta.get("resourceVersion")))
        return key in self._processed

    # -- state ----------------------------------------------------------------------------------
    def _load_state(self) -> None:
        try:
            self.resource_version = self.resource_version or self.store.get(self.rv_key)
            seen = self.store.get(self.seen_key)
        except StoreUnavailable as exc:
            log.warning("cannot read the watch position (%s): starting as on first install "
                        "(signals for events of the last %.0f s)", exc, self.start_window)
            return
        self.last_seen = self.last_seen or parse_k8s_time(seen)
        if self.resource_version:
            log.info("resuming the watch of %s from resourceVersion %s", self._what,
                     self.resource_version)

    def _persist(self, force: bool = False) -> None:
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
