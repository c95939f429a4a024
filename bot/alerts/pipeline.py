"""From "look at this pod" to incidents: coalesce, diagnose, group — and wait out outages.

An event storm repeats the same pods hundreds of times; each pod is queued once until it is
processed (coalesced), so a storm costs one diagnosis per pod, not per event. A pod that is
gone or healthy leaves its incidents, which is how threads learn they are resolved.

Failures cost one retry per pod, never more (issue 8: every failure used to start another
2-second timer and every re-submission another chain, 7+ per pod during an outage, API reads
from 18/s to over 200/s):

* **Per pod.** A pod is in exactly one place: queued, being diagnosed, or waiting for its
  retry. A signal for a pod that is queued or waiting is absorbed (the retry will look at the
  pod as it is then); one that arrives while the pod is being diagnosed queues it once more
  after a success. The retry waits a capped exponential back-off with full jitter
  (``RETRY_BACKOFF``: up to 2 s, doubling to 60 s), reset by a success.
* **Outages** (the Kubernetes API unreachable, the store unavailable) are not the pod's fault,
  and each pod probing on its own schedule would hammer a server that is coming back. The
  whole pipeline waits behind one gate instead: after a failure of that kind, nothing is
  diagnosed until the gate's back-off has passed; then one probe — one diagnosis — runs alone.
  If it fails, the gate closes again for a longer while (``OUTAGE_BACKOFF``, 2 s doubling to
  60 s, "equal jitter": between half and all of the step, so the probes of a long outage are
  at least that far apart, whatever the dice say, and replicas still spread out); if it
  succeeds, the gate opens, the pods that waited through the outage are due at once, and the
  workers (two by default) work through them at their own pace. Evidence from a part that
  already probes at its own bounded pace (the event watch reconnecting, the once-a-second job
  reaching the store) ends a gate step early: recovery is not delayed by a long step.

The registry never holds up the alert (issue 10, Deliver 3). A pod's first diagnosis — the
API's facts, plus what the registry already answered about its images (`RegistryAnswers`) —
is observed at once, so its incident's group_wait starts with the first signal. What is still
to ask goes to the registry probe pool (bot/alerts/probes.py: its own two threads, each
question once however many pods wait for it); when the answers are in, the waiting pods are
queued again and observed with them: the refined diagnosis replaces the incident's (and edits
the root if it was already posted, see bot/alerts/incidents.py). A registry that is slow or
unreachable costs the probe threads, never a pipeline worker; its unreachability is evidence.

Nothing is dropped: a pod leaves the pipeline only after a diagnosis that was recorded (or an
unexpected error, which is logged with its traceback: retrying a bug forever helps no one).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from bot.alerts.incidents import IncidentManager
from bot.alerts.investigate import (
    SHARE_SECONDS,
    RegistryAnswers,
    SharedDiagnoses,
    first_look,
    with_answers,
)
from bot.alerts.probes import PROBE_WORKERS, RegistryProbes
from bot.alerts.workers import start_workers, stop_workers
from bot.kube.client import KubeClient, KubeError, KubeNotFound, KubeUnreachable
from bot.kube.view import PodView
from bot.metrics import Metrics
from bot.registry.client import RegistryClient
from bot.store import StoreUnavailable

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, pod)


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off: step ``n`` (from 1) is ``base * 2**(n-1)``, at most
    ``cap``; `full_jitter` waits anywhere below the step, `equal_jitter` in its upper half."""

    base: float = 2.0
    cap: float = 60.0

    def step(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** min(max(attempt, 1) - 1, 30))

    def full_jitter(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, self.step(attempt))

    def equal_jitter(self, attempt: int, rng: random.Random) -> float:
        step = self.step(attempt)
        return rng.uniform(step / 2, step)


RETRY_BACKOFF = Backoff(2.0, 60.0)
OUTAGE_BACKOFF = Backoff(2.0, 60.0)


class Pipeline:
    """A small worker pool that diagnoses pods and feeds the IncidentManager."""

    def __init__(self, kube: KubeClient, manager: IncidentManager, *,
                 registry: RegistryClient | None = None, known_hosts: Iterable[str] = (),
                 workers: int = 2, metrics: Metrics | None = None,
                 retry_backoff: Backoff = RETRY_BACKOFF,
                 outage_backoff: Backoff = OUTAGE_BACKOFF,
                 rng: random.Random | None = None, view: PodView | None = None,
                 share_seconds: float = SHARE_SECONDS,
                 answers: RegistryAnswers | None = None,
                 probe_workers: int = PROBE_WORKERS) -> None:
        self.kube = kube
        #: the watch-fed pod view: once synced, the sweep checks incidents against it
        self.view = view
        self.manager = manager
        self.registry = registry
        self.known_hosts = list(known_hosts)
        self.workers = workers
        self.metrics = metrics
        self.retry_backoff = retry_backoff
        self.outage_backoff = outage_backoff
        #: pods alike (one ReplicaSet, node, images, kubelet error) share one diagnosis for
        #: `share_seconds`: a storm costs one diagnosis per workload, plus a read per pod
        self.shared = SharedDiagnoses(share_seconds)
        #: what the registry answered, per question; asked on the probe pool, never inline
        self.answers = answers or RegistryAnswers()
        self.probes = None if registry is None else RegistryProbes(
            kube, registry, self.answers, self._answered, known_hosts=self.known_hosts,
            workers=probe_workers)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._queue: deque[Key] = deque()  # ready now, in order
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()  # signalled while being diagnosed
        self._waiting: dict[Key, float] = {}  # retry due at (monotonic)
        self._failures: dict[Key, int] = {}  # consecutive failures per pod
        self._outage_failures = 0  # consecutive outage failures (0: the gate is open)
        self._outage_since = 0.0
        self._outage_reason = ""
        self._outage_kind = ""  # "api" or "store"
        self._gate_until = 0.0
        self._probe: Key | None = None  # the one diagnosis allowed while the gate is closed
        #: diagnoses started, in total (each one reads the API; tests bound it in outages)
        self.attempts = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- intake -------------------------------------------------------------------------------

    def submit(self, namespace: str, pod: str) -> bool:
        """Queue a pod unless it is already queued or waiting for its retry; True if queued
        now. A pod being diagnosed right now is queued again once it is done."""
        key = (namespace, pod)
        with self._cond:
            if key in self._queued or key in self._waiting:
                return False
            if key in self._running:
                self._again.add(key)
                return False
            self._enqueue(key)
            return True

    def signal(self, namespace: str, pod: str, kind: str) -> bool:
        """A pod signal from the event watch or the sweep (bot/kube/watch.py `PodSignal.kind`):
        queue the pod unless a diagnosis could not tell anything new; True if queued.

        A ``pulled`` event (the kubelet pulled an image) can only say a pod recovered. With a
        current pod view that covers the namespace, a Pending pod's recovery comes from the
        view's watch (it reports the pod leaving Pending or its containers no longer waiting),
        so the event is skipped when the view holds the pod as Pending, or when the pod is in
        no incident (nothing to resolve). In a recovery of 2,000 pods that saves a GET of the
        pod and a LIST of its events for each. Pull failures are always queued."""
        view = self.view
        if kind == "pulled" and view is not None and view.current and view.covers(namespace):
            held = view.get(namespace, pod)
            if held is not None and held.phase == "Pending":
                return False
            try:
                if held is None and not self.manager.in_incident(namespace, pod):
                    return False
            except StoreUnavailable:
                pass  # cannot tell: the diagnosis will (it waits out store outages)
        return self.submit(namespace, pod)

    def incident_members(self) -> set[Key]:
        """Every pod of every active incident."""
        return self.manager.member_pods()

    def recheck_incident_members(self) -> int:
        """The periodic consistency check (resolution without events); returns how many pods
        were queued for a diagnosis.

        With a current pod view, it reads the view, not the API: a member still waiting on a
        pull stays as it is (its events keep its diagnosis current); a member the view does
        not hold is read once (GET) — gone or running cleanly, it leaves its incidents at
        once; failing outside Pending, the view tracks it. Only a member the view holds
        without a pull failure, and a failing pod in the view that is in no incident (its
        events were missed or expired), are queued for a diagnosis. Without a view, or before
        its first list completed, or while its watch is out of contact (it may be stale),
        every member is queued (the full re-diagnosis)."""
        members = self.incident_members()
        view = self.view
        if view is None or not view.current:
            return sum(self.submit(namespace, name) for namespace, name in sorted(members))
        count = 0
        for key in sorted(members):
            if not view.covers(key[0]):
                count += self.submit(*key)  # a namespace the view does not watch
                continue
            pod = view.get(*key)
            if pod is not None and pod.phase == "Pending":
                if not pod.failing:
                    count += self.submit(*key)
                continue
            try:
                pod = view.refresh(*key)  # tracked or absent: one GET
            except KubeError as exc:
                log.debug("consistency check of %s/%s skipped: %s", *key, exc)
                continue
            if pod is None or not pod.failing:
                self.manager.pod_recovered(*key)
        for pod in view.failing():
            if pod.key not in members:
                count += self.submit(*pod.key)
        view.forget(members)
        return count

    def api_is_back(self) -> None:
        """Evidence from elsewhere (the event watch reconnected) that the Kubernetes API
        answers again: if the gate is closed for the API, probe now rather than at the end of
        a back-off step that may be a minute long."""
        self._evidence("api")

    def store_is_back(self) -> None:
        """The same for the store (a scheduled job reached it again)."""
        self._evidence("store")

    def _evidence(self, kind: str) -> None:
        with self._cond:
            if self._outage_failures and self._outage_kind == kind and self._probe is None \
                    and self._gate_until > time.monotonic():
                log.info("the %s answers again: probing now", kind)
                self._gate_until = time.monotonic()
                self._cond.notify_all()

    # -- state, for readiness, metrics and tests ----------------------------------------------

    def pods(self) -> int:
        """Pods in the pipeline: queued, being diagnosed or waiting for a retry (a pod is in
        one place at a time, so this is at most the number of distinct pods signalled and not
        yet done)."""
        with self._cond:
            return len(self._queued | self._running | set(self._waiting))

    def pending_retries(self) -> list[Key]:
        """Pods waiting for their retry (each at most once)."""
        with self._cond:
            return list(self._waiting)

    @property
    def outage(self) -> str | None:
        """Why the gate is closed (the last outage error), or None while it is open."""
        with self._cond:
            return self._outage_reason if self._outage_failures else None

    # -- work ---------------------------------------------------------------------------------

    def process(self, namespace: str, pod: str) -> None:
        """Diagnose one pod now with what is known and record the result; what the registry
        is still to be asked is asked on the probe pool, which queues the pod again when the
        answers are in."""
        # a failing pod the view holds is diagnosed from the view's copy: no GET (issue 10)
        known = self.view.document(namespace, pod) if self.view is not None else None
        try:
            look = first_look(self.kube, namespace, pod, self.shared, known)
        except KubeNotFound:
            self.manager.pod_recovered(namespace, pod)  # deleted: rolled forward or removed
            return
        answers, ask = self.answers.known(look) if self.probes is not None else ({}, False)
        result = with_answers(look, answers)
        if self.metrics is not None:
            for entry in result.diagnoses:
                self.metrics.diagnoses.labels(entry.cause.value).inc()
        if not result.diagnoses:
            self.manager.pod_recovered(namespace, pod)
            return
        self.manager.observe(result, registry=answers)
        if ask and self.probes is not None:
            self.probes.ask(look)  # after the observation: the alert never waits for it
        if known is not None and self.view is not None and self.view.current:
            now = self.view.get(namespace, pod)
            if now is None or not now.failing:
                # the pod stopped failing (or left) while it was being diagnosed: the view's
                # recovery call may have come before this observation and been undone by it
                self.manager.pod_recovered(namespace, pod)

    def _answered(self, pods: list[Key]) -> None:
        """The registry answered what these pods waited for: diagnose them again."""
        for key in pods:
            self.submit(*key)

    def _worker(self) -> None:
        while True:
            with self._cond:
                key = self._take()
                if key is None:
                    return
            error: Exception | None = None
            try:
                self.process(*key)
            except (StoreUnavailable, KubeError) as exc:
                error = exc
            except Exception:
                log.exception("pod %s/%s: diagnosis failed", *key)
            with self._cond:
                self._done(key, error)
                self._cond.notify_all()

    def _enqueue(self, key: Key) -> None:
        self._queued.add(key)
        self._queue.append(key)
        self._cond.notify()

    def _take(self) -> Key | None:
        """The next pod to diagnose (called with the lock held); waits while nothing is due
        or the gate is closed; None once stopped."""
        while not self._stop.is_set():
            now = time.monotonic()
            for due_key in [k for k, due in self._waiting.items() if due <= now]:
                del self._waiting[due_key]
                self._enqueue(due_key)
            key: Key | None = None
            if self._outage_failures:
                if self._probe is None and now >= self._gate_until:
                    key = self._probe = self._probe_candidate()
            elif self._queue:
                key = self._queue.popleft()
                self._queued.discard(key)
            if key is not None:
                self._running.add(key)
                self.attempts += 1
                return key
            self._cond.wait(timeout=self._idle_wait(now))
        return None

    def _probe_candidate(self) -> Key | None:
        """A pod to probe the outage with: the next queued one, else the one whose retry is
        due first (its own back-off does not matter: the gate's does)."""
        if self._queue:
            key = self._queue.popleft()
            self._queued.discard(key)
            return key
        if self._waiting:
            key = min(self._waiting, key=self._waiting.__getitem__)
            del self._waiting[key]
            return key
        return None

    def _idle_wait(self, now: float) -> float:
        dues = list(self._waiting.values())
        if self._outage_failures and self._probe is None and self._gate_until > now:
            dues.append(self._gate_until)  # (passed with nothing to probe: wait for a submit)
        return min([0.5, *(max(due - now, 0.01) for due in dues)])

    def _done(self, key: Key, error: Exception | None) -> None:
        """Book the end of one diagnosis (lock held)."""
        self._running.discard(key)
        again = key in self._again
        self._again.discard(key)
        now = time.monotonic()
        if error is None:
            self._failures.pop(key, None)
            if self._outage_failures and key == self._probe:
                # only the probe counts: a diagnosis that began before the gate closed may
                # have done its reads and writes before the outage, and proves nothing
                self._outage_ends(now)
            if again:
                self._enqueue(key)
            return
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self._waiting[key] = now + self.retry_backoff.full_jitter(failures, self._rng)
        if isinstance(error, StoreUnavailable | KubeUnreachable):
            self._outage_continues(key, error, now)
        else:
            level = logging.WARNING if failures in (1, 5) or failures % 20 == 0 else \
                logging.DEBUG
            log.log(level, "pod %s/%s: %s; retrying in %.1f s (attempt %d)", *key, error,
                    self._waiting[key] - now, failures)

    def _outage_continues(self, key: Key, error: Exception, now: float) -> None:
        was_probe = key == self._probe
        if was_probe:
            self._probe = None
        if self._outage_failures and not was_probe:
            # a diagnosis that started before the gate closed: the same outage, no new step
            return
        self._outage_failures += 1
        if self._outage_failures == 1:
            self._outage_since = now
        self._outage_reason = str(error)
        self._outage_kind = "store" if isinstance(error, StoreUnavailable) else "api"
        wait = self.outage_backoff.equal_jitter(self._outage_failures, self._rng)
        self._gate_until = now + wait
        n = self._outage_failures
        level = logging.WARNING if n in (1, 5) or n % 20 == 0 else logging.INFO
        log.log(level, "diagnoses paused (pod %s/%s: %s); probing again in %.1f s "
                "(attempt %d, %d pod(s) waiting)", *key, error, wait, n,
                len(self._queue) + len(self._waiting))

    def _outage_ends(self, now: float) -> None:
        """The gate opens: every pod that waited through the outage is due now."""
        log.warning("diagnoses resume: the outage (%s) ended after %.0f s; %d pod(s) due",
                    self._outage_reason, now - self._outage_since,
                    len(self._queue) + len(self._waiting))
        self._outage_failures = 0
        self._outage_reason = ""
        self._probe = None
        for key in sorted(self._waiting, key=self._waiting.__getitem__):
            self._enqueue(key)
        self._waiting.clear()

    def start(self) -> None:
        self._stop.clear()
        if self.probes is not None:
            self.probes.start()
        self._threads += start_workers(self.workers, self._worker, "pipeline")

    def stop(self, timeout: float = 5.0) -> None:
        stop_workers(self._threads, self._stop, self._cond, timeout)
        if self.probes is not None:
            self.probes.stop(timeout)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued, running or waiting for a retry, and no registry
        question is open (tests, the demo, graceful stop)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._running or self._waiting or (
                    self.probes is not None and self.probes.pending()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.2))
        return True
