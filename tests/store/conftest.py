"""Every store test runs against both stores: they implement the same atomic primitives, and
a difference between them is a bug in one (the demo and single replicas use the in-process one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bot.store import MemoryStore, Store
from tests.support.redis import redis_store


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(prefix=f"t{uuid.uuid4().hex[:8]}")
    else:
        with redis_store() as s:
            yield s
