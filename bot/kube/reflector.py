"""List once, then watch from the list's resourceVersion: the loop every watch of the bot runs.

Kubernetes controllers call this a reflector (client-go's ``tools/cache``). It is written once
here and used by the event watch (bot/kube/watch.py: ``EventWatcher``) and the pod view
(bot/kube/view.py: ``PodView``); each says what a list and a watch event mean to it through
the hooks below, and the rules of talking to a real kube-apiserver stay in one place:

* **Resume.** Each watch starts from the resourceVersion of the last list, event or bookmark;
  a dropped or quiet stream is reopened from it (a cheap request served from the apiserver's
  watch cache): nothing is replayed, nothing in between is missed.
* **410 Gone** (the RV fell out of the watch cache — a long outage, a compaction), as an HTTP
  410 or, as the apiserver sends it, an ``ERROR`` event with a Status of ``code: 410`` inside a
  200 stream: relist, and the user reconciles what it held with what the list says. A second
  410 before any event backs off instead of spinning.
* **Too large resource version** (a 504 ``ERROR`` whose cause is ``ResourceVersionTooLarge``:
  the stored RV is beyond the server's, after an etcd restore or from an HA peer that lags):
  relist, as for 410; waiting for an RV that may never come would leave the watch deaf.
* **Bookmarks** move the RV forward without an object, so a reopen after a quiet hour does not
  start from an RV the apiserver has forgotten.
* **Idle timeout.** ``stop`` is checked between events and at least every ``idle_timeout``
  seconds: a watch that delivers nothing for that long is reopened from the same RV.
* **Drops** (reset, timeout, 5xx, any other ``ERROR``): reconnect after a full-jitter
  exponential back-off (``backoff_base`` doubling to ``backoff_max``), reset once a stream works
  again. Nothing kills the thread; unexpected errors are logged and backed off too.
* **Health** (for ``/readyz``): the time of the last contact with the API server — a list, a
  watch event or bookmark, a watch that ended normally. A healthy reflector is in contact at
  least every ``idle_timeout`` seconds and one recovering from a blip waits at most
  ``backoff_max``; so no contact for ``stale_after`` seconds (by default the sum of the two plus
  10 s), or a failure streak that long, means the bot is blind, and `health()` says why.
* **on_api_back** is called when the API server answers again after failures (the alert
  pipeline probes at once instead of waiting out its own outage back-off).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bot.kube.client import KubeError, KubeThrottled

log = logging.getLogger(__name__)

__all__ = ["Reflector"]


class Expired(Exception):
    """The watch's resourceVersion is gone (410): relist."""


class _StreamError(Exception):
    """The stream reported an error other than 410 (back off and reconnect)."""


def _too_large(status: Mapping[str, Any]) -> bool:
    """A Status saying the watch's RV is beyond the server's ("Too large resource version",
    504 with the cause ResourceVersionTooLarge): a restored etcd, or an HA peer whose cache
    lags. The stored RV may never come, so relist like client-go's reflector does."""
    causes = (status.get("details") or {}).get("causes") or []
    return any(isinstance(c, dict) and c.get("reason") == "ResourceVersionTooLarge"
               for c in causes)


class Reflector:
    """The list+watch loop; subclasses implement `list_objects`, `open_watch`, `replace` and
    `apply` (and may hook `listed`, `caught_up`, `load_state`, `persist`).

    ``run(stop)`` blocks until ``stop`` is set; ``start()`` runs it in a daemon thread and
    ``stop()`` ends it. Hooks run on that thread, in the order the API server sent things.
    """

    #: for log lines and `name`: ``events in all namespaces``, ``pods in "shop"``, ...
    what: str = "objects"
    #: the thread's name prefix
    thread_name: str = "reflector"

    def __init__(self, *, watch_timeout: int = 300, backoff_base: float = 0.5,
                 backoff_max: float = 30.0, idle_timeout: float = 5.0,
                 stale_after: float | None = None,
                 on_api_back: Callable[[], None] | None = None) -> None:
        self.watch_timeout = watch_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.idle_timeout = idle_timeout
        self._stale_after = stale_after
        self.resource_version: str | None = None
        self.failures = 0  # consecutive failed attempts (drives the back-off)
        self.relists = 0  # relists after 410 Gone, in total
        self._expired_in_row = 0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None  # monotonic
        self._last_contact: float | None = None  # monotonic: last answer from the API server
        self._failing_since: float | None = None  # monotonic: start of the failure streak
        #: why the last attempt failed (cleared by the next contact)
        self.last_error: str | None = None
        #: called when the API answers again after failures (the pipeline probes at once)
        self.on_api_back = on_api_back

    # -- what a user says -----------------------------------------------------------------------
    def list_objects(self) -> tuple[Sequence[Any], str]:
        """One full (paginated) list: the items (raw, or as the user projects them page by
        page) and the list's resourceVersion."""
        raise NotImplementedError

    def open_watch(self, resource_version: str | None) -> Iterator[dict[str, Any]]:
        """A watch from `resource_version` (raw watch events, as KubeClient yields them)."""
        raise NotImplementedError

    def replace(self, items: Sequence[Any], resource_version: str) -> None:
        """The list's answer (`list_objects`'s items): everything there is, as of
        `resource_version`."""
        raise NotImplementedError

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        """One ADDED, MODIFIED or DELETED watch event."""
        raise NotImplementedError

    def listed(self) -> None:
        """After a list was applied and the RV taken from it (e.g. save the position)."""

    def rv_advanced(self) -> None:
        """The RV moved forward (an event or a bookmark)."""

    def caught_up(self) -> None:
        """A watch ended normally: the server had nothing more to send."""

    def load_state(self) -> None:
        """Before the first list (e.g. read a stored RV to resume from)."""

    def persist(self, force: bool = False) -> None:
        """After each event and attempt (force: on exit and after a list)."""

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop_event.clear()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self.run, args=(self._stop_event,),
                                        name=f"{self.thread_name}:{self.what}", daemon=True)
        self._thread.start()
        return self._thread

    def request_stop(self) -> None:
        """Ask the loop to end (it ends within `idle_timeout`); `stop` also waits for it. To
        stop many reflectors, ask them all first, then stop each: the waits overlap."""
        self._stop_event.set()

    def stop(self, timeout: float = 5) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.1f s", self.name, timeout)

    def run(self, stop: threading.Event) -> None:
        """List/watch until `stop` is set; never raises."""
        self.load_state()
        try:
            while not stop.is_set():
                try:
                    if self.resource_version is None:
                        self._relist()
                    self._watch_once(stop)
                except Expired:
                    self.relists += 1
                    self._expired_in_row += 1
                    log.info("watch of %s expired (410 Gone) or is ahead of the server: "
                             "relisting", self.what)
                    self.resource_version = None
                    if self._expired_in_row > 1:  # expired again before any event: no spin
                        self._back_off(stop, "the watch expired again")
                except KubeThrottled as exc:  # 429: no sooner than the server asked
                    self._back_off(stop, str(exc), at_least=exc.retry_after)
                except KubeError as exc:
                    self._back_off(stop, str(exc))
                except Exception:
                    log.exception("unexpected error in the watch of %s", self.what)
                    self._back_off(stop, "unexpected error")
                self.persist()
        finally:
            self.persist(force=True)

    @property
    def name(self) -> str:
        """``watch of events in all namespaces`` (or of one namespace), for messages."""
        return f"watch of {self.what}"

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
        not failing for longer than that. A reflector that was never started is not judged."""
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

    def _back_off(self, stop: threading.Event, why: str, at_least: float = 0.0) -> None:
        self.failures += 1
        self.last_error = why
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        cap = min(self.backoff_max, self.backoff_base * 2 ** min(self.failures - 1, 30))
        delay = random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography
        delay = max(delay, min(at_least, self.backoff_max))  # a 429's Retry-After
        level = logging.WARNING if self.failures in (1, 5) or self.failures % 20 == 0 else \
            logging.DEBUG
        log.log(level, "watch of %s interrupted (%s); reconnecting in %.2f s (attempt %d)",
                self.what, why, delay, self.failures)
        stop.wait(delay)

    # -- list and watch -------------------------------------------------------------------------
    def _relist(self) -> None:
        items, rv = self.list_objects()
        self._contact()
        self.replace(items, rv)
        self.resource_version = rv or None
        self.listed()

    def _watch_once(self, stop: threading.Event) -> None:
        opened = time.monotonic()
        delivered = 0
        stream = self.open_watch(self.resource_version)
        try:
            for event in stream:
                self._contact()
                kind = str(event.get("type"))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410 or _too_large(obj):
                        raise Expired()
                    raise _StreamError(f"watch ERROR {code} {obj.get('reason')}: "
                                       f"{obj.get('message')}")
                delivered += 1
                self._healthy()
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.apply(kind, obj)
                if rv and str(rv) != self.resource_version:
                    self.resource_version = str(rv)
                    self.rv_advanced()
                self.persist()
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
            self.caught_up()
