"""A short-lived cache of registry answers, keyed so that no password can be read back from it.

Why a module of its own: a storm of failing pods asks the same registry the same question many
times a minute; reusing an answer for `cache_ttl` seconds (shorter when the registry sent
`Retry-After`) keeps the bot from adding to a rate limit. The key must tell a corrected password
from the old one, yet must not hold the password: it holds an HMAC of it under a per-process
random key instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time

from bot.registry.model import Probe, RegistryCredentials, Target

log = logging.getLogger(__name__)

CacheKey = tuple[str, ...]


class ResultCache:
    """Probes and tag lists by (operation, target, user, password fingerprint); thread-safe.

    A `ttl` of 0 or less disables it (nothing is stored, nothing is found).
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._results: dict[CacheKey, tuple[float, object]] = {}
        self._lock = threading.Lock()
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
            if expires_at <= time.monotonic():
                del self._results[key]
                return None
        log.debug("cache hit %s %s/%s", key[0], key[1], key[2])
        return value

    def put(self, key: CacheKey, value: object, probe: Probe) -> None:
        """Keep `value` for the TTL, or until the probe's `Retry-After` if that is sooner."""
        ttl = self.ttl
        if ttl <= 0:
            return
        if probe.retry_after is not None:
            ttl = min(ttl, probe.retry_after)  # ask again once the registry allows it
        with self._lock:
            self._results[key] = (time.monotonic() + ttl, value)

    def clear(self) -> None:
        """Forget every stored answer."""
        with self._lock:
            self._results.clear()
