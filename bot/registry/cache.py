"""A short-lived cache of registry answers, keyed so that no password can be read back from it.

Why a module of its own: a storm of failing pods asks the same registry the same question many
times a minute; reusing an answer for `cache_ttl` seconds (shorter when the registry sent
`Retry-After`) keeps the bot from adding to a rate limit. The key must tell a corrected password
from the old one, yet must not hold the password: it holds an HMAC of it under a per-process
random key instead.

The same question asked by several threads at once (the alert pipeline's probe threads asking
for pods in other namespaces that use one image, a person's `/imagepull diagnose` beside them,
or one registry's outage) is asked once: `claim` makes
the first caller the one that probes and the others wait for its answer (bounded by
`wait_seconds`, after which they ask themselves rather than hang behind a stuck probe).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable

from bot.registry.model import Probe, RegistryCredentials, Target

log = logging.getLogger(__name__)

CacheKey = tuple[str, ...]

#: Answers kept at most (one per operation, image and credentials: a storm of pods with a new
#: image each must not grow the cache without bound). Beyond it, expired answers go first,
#: then the oldest.
MAX_RESULTS = 4_096


class ResultCache:
    """Probes and tag lists by (operation, target, user, password fingerprint); thread-safe.

    A `ttl` of 0 or less disables it (nothing is stored, nothing is found).
    """

    def __init__(self, ttl: float, wait_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_RESULTS) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.wait_seconds = wait_seconds
        self._clock = clock
        self._results: dict[CacheKey, tuple[float, object]] = {}
        #: key -> (done, the answer once done, prober's thread id) of a probe in progress
        self._flights: dict[CacheKey, tuple[threading.Event, list[object], int]] = {}
        self._lock = threading.Lock()
        #: answers handed to a caller that waited for another's probe (tests, metrics)
        self.shared = 0
        # Per-process key: cache entries for a corrected password must not be confused with
        # the old one, but the cache key must not hold anything that reveals the password.
        self._fingerprint_key = secrets.token_bytes(16)

    def key(
        self, operation: str, target: Target, credentials: RegistryCredentials | None
    ) -> CacheKey:
        """The key for `operation` on `target` as `credentials` (never the password itself)."""
        fingerprint = ""
        if credentials is not None:
            fingerprint = hmac.new(
                self._fingerprint_key, credentials.password.encode(), hashlib.sha256
            ).hexdigest()[:16]
        return (
            operation,
            target.host,
            target.repository or "",
            target.reference or "",
            credentials.username if credentials else "",
            fingerprint,
        )

    def get(self, key: CacheKey) -> object | None:
        """The unexpired value stored under `key`, if any."""
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._results.get(key)
            if entry is None:
                return None
            expires_at, value = entry
            if expires_at <= self._clock():
                del self._results[key]
                return None
        log.debug("cache hit %s %s/%s", key[0], key[1], key[2])
        return value

    def claim(self, key: CacheKey) -> object | None:
        """The stored answer for `key`, or the answer of the same probe another thread is
        making now (waited for); None when the caller is to probe — and then must call
        `put` and, in a ``finally``, `release`. With caching off, every caller probes."""
        if self.ttl <= 0:
            return None
        deadline = self._clock() + self.wait_seconds
        while True:
            found = self.get(key)
            if found is not None:
                return found
            with self._lock:
                flight = self._flights.get(key)
                if flight is None:
                    self._flights[key] = (threading.Event(), [], threading.get_ident())
                    return None
            done, answer, prober = flight
            if prober == threading.get_ident():
                return None  # asked again inside its own probe: never wait for oneself
            remaining = deadline - self._clock()
            if remaining <= 0 or not done.wait(remaining):
                return None  # a stuck probe: ask ourselves (without taking its place)
            if answer:
                with self._lock:
                    self.shared += 1
                return answer[0]
            # the prober failed without an answer: loop (another claim, or our own probe)

    def release(self, key: CacheKey) -> None:
        """End the claim on `key` (after `put`, or on failure): waiters stop waiting."""
        with self._lock:
            flight = self._flights.pop(key, None)
        if flight is not None:
            flight[0].set()

    def put(self, key: CacheKey, value: object, probe: Probe) -> None:
        """Keep `value` for the TTL, or until the probe's `Retry-After` if that is sooner;
        threads waiting on a claim of `key` get it either way."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight[1].append(value)
        ttl = self.ttl
        if ttl <= 0:
            return
        if probe.retry_after is not None:
            ttl = min(ttl, probe.retry_after)  # ask again once the registry allows it
        with self._lock:
            now = self._clock()
            self._results.pop(key, None)  # re-inserted last: the dict's order is by age
            self._results[key] = (now + ttl, value)
            if len(self._results) > self.max_entries:
                for stale in [k for k, (expires, _) in self._results.items() if expires <= now]:
                    del self._results[stale]
                while len(self._results) > self.max_entries:
                    del self._results[next(iter(self._results))]

    def __len__(self) -> int:
        with self._lock:
            return len(self._results)

    def clear(self) -> None:
        """Forget every stored answer."""
        with self._lock:
            self._results.clear()
