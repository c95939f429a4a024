"""Real Redis for tests: 127.0.0.1:6379 (started by .ci/run when none answers).

Each test gets its own key prefix and its keys are deleted afterwards, so tests can share one
server and run in any order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from bot.store import RedisStore

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@contextmanager
def redis_store(prefix: str | None = None) -> Iterator[RedisStore]:
    """A RedisStore with a unique prefix; fails the test with a how-to if Redis is down."""
    store = RedisStore(REDIS_URL, prefix or f"test-{uuid.uuid4().hex[:10]}")
    if not store.ping():
        pytest.fail(f"Redis does not answer at {REDIS_URL}: start one with `redis-server "
                    "--daemonize yes --port 6379 --save '' --appendonly no` (.ci/run does)")
    try:
        yield store
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{store.prefix}:*"))
        fleet = store.fleet().prefix
        if not fleet.startswith("ipb-"):  # a test's own fleet (the production one is shared)
            keys += list(client.scan_iter(f"{fleet}:*"))
        if keys:
            client.delete(*keys)
        client.close()
