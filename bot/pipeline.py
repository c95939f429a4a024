"""From "look at this pod" to incidents: coalesce, diagnose, group.

An event storm repeats the same pods hundreds of times; each pod is queued once until it is
processed (coalesced), so a storm costs one diagnosis per pod, not per event. A pod that is
gone or healthy leaves its incidents, which is how threads learn they are resolved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

from bot.diagnosis.engine import diagnose
from bot.incidents import IncidentManager
from bot.investigate import investigate_pod
from bot.kube import KubeClient, KubeError, KubeNotFound
from bot.metrics import Metrics
from bot.registry import RegistryClient
from bot.store import StoreUnavailable

log = logging.getLogger(__name__)

RETRY_DELAY = 2.0


class Pipeline:
    """A small worker pool that diagnoses pods and feeds the IncidentManager."""

    def __init__(self, kube: KubeClient, manager: IncidentManager, *,
                 registry: RegistryClient | None = None, known_hosts: Iterable[str] = (),
                 workers: int = 2, metrics: Metrics | None = None) -> None:
        self.kube = kube
        self.manager = manager
        self.registry = registry
        self.known_hosts = list(known_hosts)
        self.workers = workers
        self.metrics = metrics
        self._queue: deque[tuple[str, str]] = deque()
        self._queued: set[tuple[str, str]] = set()
        self._busy = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- intake -------------------------------------------------------------------------------

    def submit(self, namespace: str, pod: str) -> bool:
        """Queue a pod unless it is already queued; True if queued now."""
        key = (namespace, pod)
        with self._cond:
            if key in self._queued:
                return False
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()
            return True

    def recheck_incident_members(self) -> int:
        """Queue every pod of every active incident (resolution without events)."""
        count = 0
        for incident_id in self.manager.active_ids():
            incident = self.manager.load(incident_id)
            if incident is None:
                continue
            for pod in incident.pods:
                namespace, _, name = pod.partition("/")
                count += self.submit(namespace, name)
        return count

    # -- work ---------------------------------------------------------------------------------

    def process(self, namespace: str, pod: str) -> None:
        """Diagnose one pod now and record the result."""
        try:
            facts = investigate_pod(self.kube, namespace, pod, self.registry, self.known_hosts)
        except KubeNotFound:
            self.manager.pod_recovered(namespace, pod)  # deleted: rolled forward or removed
            return
        result = diagnose(facts)
        if self.metrics is not None:
            for entry in result.diagnoses:
                self.metrics.diagnoses.labels(entry.cause.value).inc()
        if result.diagnoses:
            self.manager.observe(result)
        else:
            self.manager.pod_recovered(namespace, pod)

    def _worker(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                key = self._queue.popleft()
                self._queued.discard(key)
                self._busy += 1
            try:
                self.process(*key)
            except (StoreUnavailable, KubeError) as exc:
                log.warning("pod %s/%s: %s; retrying in %.0fs", *key, exc, RETRY_DELAY)
                threading.Timer(RETRY_DELAY, self.submit, args=key).start()
            except Exception:
                log.exception("pod %s/%s: diagnosis failed", *key)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def start(self) -> None:
        self._stop.clear()
        for i in range(self.workers):
            thread = threading.Thread(target=self._worker, name=f"pipeline-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or running (tests, the demo, graceful stop)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.2))
        return True
