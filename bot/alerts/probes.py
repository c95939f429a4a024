"""The alert pipeline's registry probes: on their own few threads, one per question.

Issue 10, Deliver 3: a registry probe never holds up the alert. The pipeline observes a pod's
first look (the API's facts and the registry answers already known) at once, and hands the
question the registry can answer to this pool. A question is a namespace, the pod's pull
secrets and its probe-worthy images (`FirstLook.question`): the pods alike of a storm, and
other workloads with the same images and secrets, ask it once, however many are waiting for
it. At most `workers` questions are asked at a time (each bounded by the registry client's
timeouts and PROBE_DEADLINE), so a slow or unreachable registry costs these threads, never
the pipeline's workers, nor the Kubernetes side of a storm.

When the answers are in they are remembered (`RegistryAnswers`) and every pod that waited for
them is handed back (`on_answered`: the pipeline queues it again), so the refined diagnosis
takes the same path as any other: the outage gate, the retry, the recovery check. An answer
that is only "the bot could not reach the registry" is an answer too (its evidence line); a
question that fails outright (the pull secrets cannot be read) is logged and left: the first
diagnosis stands, and the pod's next diagnosis asks again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from bot.alerts.investigate import FirstLook, RegistryAnswers, ask_registry
from bot.alerts.workers import start_workers, stop_workers
from bot.kube.client import KubeClient, KubeError
from bot.registry.client import RegistryClient

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, pod)

#: Questions asked at once: each holds a thread for up to PROBE_DEADLINE when the registry
#: hangs; the registry client's cache shares the answers of identical HTTP requests anyway.
PROBE_WORKERS = 2
#: Questions held at once (queued or being asked). Each holds its first look (a few KB);
#: while a registry hangs, a storm with a new image per pod would otherwise queue one per pod.
#: A question beyond the bound is not held: its pods keep their first diagnosis (the alert
#: is out either way) and the question is asked at a pod's next diagnosis (its next event).
MAX_QUESTIONS = 1_000


@dataclass
class _Question:
    look: FirstLook
    pods: set[Key] = field(default_factory=set)


class RegistryProbes:
    """A small pool that asks the registry each question once and hands the pods back."""

    def __init__(self, kube: KubeClient, registry: RegistryClient, answers: RegistryAnswers,
                 on_answered: Callable[[list[Key]], None], *, known_hosts: Iterable[str] = (),
                 workers: int = PROBE_WORKERS, max_questions: int = MAX_QUESTIONS) -> None:
        self.kube = kube
        self.registry = registry
        self.answers = answers
        self.on_answered = on_answered
        self.known_hosts = list(known_hosts)
        self.workers = workers
        self._questions: dict[Hashable, _Question] = {}  # queued or being asked
        self._queue: deque[Hashable] = deque()
        self._asking = 0
        self.max_questions = max_questions
        #: questions asked, in total (tests, metrics)
        self.asked = 0
        #: questions not held because `max_questions` were (asked again at a later diagnosis)
        self.deferred = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def ask(self, look: FirstLook) -> None:
        """Have the look's question asked (once, with every pod that waits for it)."""
        question = look.question
        pod = (look.diagnosis.namespace, look.diagnosis.pod)
        with self._cond:
            entry = self._questions.get(question)
            if entry is None and len(self._questions) >= self.max_questions:
                self.deferred += 1
                if self.deferred == 1 or self.deferred % 1000 == 0:
                    log.warning("%d registry questions waiting (the registry is slow or "
                                "hangs): %s/%s keeps its first diagnosis and is asked again "
                                "at its next diagnosis (%d deferred so far)", len(self._queue),
                                *pod, self.deferred)
                return
            if entry is None:
                entry = self._questions[question] = _Question(look)
                self._queue.append(question)
                self._cond.notify()
            entry.pods.add(pod)

    def pending(self) -> int:
        """Questions queued, being asked, or whose pods are being handed back."""
        with self._cond:
            return len(self._queue) + self._asking

    def _take(self) -> Hashable | None:
        with self._cond:
            while not self._queue:
                if self._stop.is_set():
                    return None
                self._cond.wait(timeout=0.5)
            self._asking += 1
            return self._queue.popleft()

    def _worker(self) -> None:
        while (question := self._take()) is not None:
            with self._cond:
                look = self._questions[question].look
            answers = None
            try:
                answers = ask_registry(self.kube, self.registry, look, self.known_hosts)
            except KubeError as exc:  # the pull secrets could not be read
                log.warning("registry probe for %s/%s not made: %s; its first diagnosis "
                            "stands", look.diagnosis.namespace, look.diagnosis.pod, exc)
            except Exception:
                log.exception("registry probe for %s/%s failed; its first diagnosis stands",
                              look.diagnosis.namespace, look.diagnosis.pod)
            with self._cond:
                if answers is not None:
                    self.answers.put(question, answers)
                pods = sorted(self._questions.pop(question).pods)
                self.asked += 1
            try:
                if answers is not None:
                    self.on_answered(pods)
            except Exception:
                log.exception("handing back %d pod(s) after a registry probe", len(pods))
            finally:
                with self._cond:
                    self._asking -= 1
                    self._cond.notify_all()

    def start(self) -> None:
        self._stop.clear()
        self._threads += start_workers(self.workers, self._worker, "registry-probe")

    def stop(self, timeout: float = 5.0) -> None:
        stop_workers(self._threads, self._stop, self._cond, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no question is queued or being asked."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._asking,
                                       timeout=timeout)
