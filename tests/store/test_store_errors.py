"""Whatever Redis answers, callers get a StoreError, never a redis exception; the atomic
claim-and-record primitive is all or nothing. Both stores fail alike (MemoryStore mirrors Redis).
"""

from __future__ import annotations

import time

import pytest
import redis

from bot.store import Store, StoreError, StoreRefused

pytestmark = [pytest.mark.integration, pytest.mark.security]


def test_a_key_of_another_type_is_store_refused_not_a_redis_error(store: Store) -> None:
    text, hash_, set_ = store.key("string"), store.key("hash"), store.key("set")
    store.put(text, "x")
    store.hset(hash_, {"a": "1"})
    store.sadd(set_, "m")
    for call in (lambda: store.zrem(set_, "m"), lambda: store.zrem(text, "m"),
                 lambda: store.hgetall(text),
                 lambda: store.hset(text, {"a": "1"}),
                 lambda: store.hsetnx(text, "a", "1"), lambda: store.hdel(text, "a"),
                 lambda: store.smembers(hash_), lambda: store.sadd(hash_, "m"),
                 lambda: store.srem(text, "m"), lambda: store.get(set_)):
        with pytest.raises(StoreRefused) as caught:
            call()
        assert not isinstance(caught.value, redis.exceptions.RedisError)
        assert caught.value.__cause__ is None  # no driver traceback chained to it
        assert "WRONGTYPE" in str(caught.value)


def test_set_nx_hset_claims_and_records_together(store: Store) -> None:
    claim, record = store.key("apr", "decision"), store.key("apr")
    store.hset(record, {"id": "apr", "state": "pending"}, ttl=60)
    assert store.set_nx_hset(claim, "carol", record, {"state": "approved"}, ttl=60)
    assert store.hgetall(record) == {"id": "apr", "state": "approved"}
    assert not store.set_nx_hset(claim, "dave", record, {"state": "denied"}, ttl=60)
    assert store.get(claim) == "carol" and store.hgetall(record)["state"] == "approved"


def test_set_nx_hset_on_a_record_of_another_type_takes_no_claim(store: Store) -> None:
    claim, record = store.key("x", "decision"), store.key("x")
    store.put(record, "not a hash")
    with pytest.raises(StoreError):
        store.set_nx_hset(claim, "carol", record, {"state": "approved"})
    assert store.get(claim) is None  # nothing half-done: the next try is not blocked


def test_hset_with_ttl_expires_the_record(store: Store) -> None:
    record = store.key("r")
    store.hset(record, {"a": "1"}, ttl=0.2)
    assert store.hgetall(record) == {"a": "1"}
    time.sleep(0.3)
    assert store.hgetall(record) == {}
