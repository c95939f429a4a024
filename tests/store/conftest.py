"""Every store test runs against every store: they implement the same atomic primitives, and
a difference between them is a bug in one (the demo and single replicas use the in-process one).
`cluster` is a RedisStore on a real three-node Redis Cluster (hash-tagged keys, the cluster
client): every primitive is proven there too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bot.store import MemoryStore, Store
from tests.support.redis import redis_store
from tests.support.redis_cluster import cluster_store


@pytest.fixture(params=["redis", "memory", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(prefix=f"t{uuid.uuid4().hex[:8]}")
    elif request.param == "cluster":
        with cluster_store(request.getfixturevalue("redis_cluster"),
                           f"t{uuid.uuid4().hex[:8]}:prod-eu") as s:
            yield s
    else:
        with redis_store() as s:
            yield s
