"""Both stores honour the same atomic primitives; Redis is the real server on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from bot.store import MemoryStore, RedisStore, Store, StoreUnavailable, open_store
from tests.support.redis import REDIS_URL, redis_store

pytestmark = pytest.mark.integration


def test_set_nx_decides_exactly_one_winner_among_threads(store: Store) -> None:
    name = store.key("claim", "incident-1")
    wins: list[int] = []
    barrier = threading.Barrier(16)

    def contender(i: int) -> None:
        barrier.wait()
        if store.set_nx(name, f"owner-{i}", ttl=5):
            wins.append(i)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get(name) == f"owner-{wins[0]}"


def test_claims_expire_and_only_the_owner_releases(store: Store) -> None:
    assert store.claim("post", "a", ttl=0.2)
    assert not store.claim("post", "b", ttl=0.2)
    store.release("post", "b")  # not the owner: no effect
    assert not store.claim("post", "b", ttl=0.2)
    time.sleep(0.3)
    assert store.claim("post", "b", ttl=5)
    store.release("post", "b")
    assert store.claim("post", "c", ttl=5)


def test_hashes_and_sets(store: Store) -> None:
    h, s = store.key("h"), store.key("s")
    assert store.hsetnx(h, "a", "1") and not store.hsetnx(h, "a", "2")
    store.hset(h, {"b": "2"})
    assert store.hgetall(h) == {"a": "1", "b": "2"}
    store.hdel(h, "a")
    assert store.hgetall(h) == {"b": "2"}
    assert store.sadd(s, "x", "y") == 2 and store.sadd(s, "y", "z") == 1
    assert store.smembers(s) == {"x", "y", "z"}
    assert store.srem(s, "x", "nope") == 1
    store.delete(h, s)
    assert store.hgetall(h) == {} and store.smembers(s) == set()


def test_put_with_ttl_and_delete_if_equals(store: Store) -> None:
    k = store.key("v")
    store.put(k, "1", ttl=0.2)
    assert store.get(k) == "1"
    assert not store.delete_if_equals(k, "2") and store.get(k) == "1"
    time.sleep(0.3)
    assert store.get(k) is None
    store.put(k, "3")
    assert store.delete_if_equals(k, "3") and store.get(k) is None


def test_unreachable_redis_raises_store_unavailable_not_a_driver_error() -> None:
    dead = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        dead.get("x")
    assert dead.ping() is False


def test_open_store_without_url_warns(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(open_store(None), MemoryStore)
    assert "per process" in caplog.text
    assert isinstance(open_store(REDIS_URL), RedisStore)


def test_an_emptied_hash_or_set_is_gone(store: Store) -> None:
    """As in Redis: per-pod keys (a pod's incident index) leave with their last member, so a
    storm of pods created and deleted does not leave one empty key per pod behind."""
    h, s = store.key("h"), store.key("s")
    store.hset(h, {"a": "1"})
    store.sadd(s, "x")
    store.hdel(h, "a")
    store.srem(s, "x")
    store.srem(store.key("never"), "x")  # removing from a key that is not there creates none
    store.hdel(store.key("never-h"), "a")
    if isinstance(store, MemoryStore):
        assert len(store) == 0
    else:
        assert store.client.exists(h, s, store.key("never"), store.key("never-h")) == 0


def test_the_memory_store_sweeps_expired_keys_nobody_reads() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    for i in range(100):
        store.put(store.key("claim", str(i)), "owner", ttl=10)
    store.put(store.key("kept"), "1")
    now[0] = 11.0  # every claim has expired; nothing reads them again
    for i in range(MemoryStore.SWEEP_EVERY):
        store.put(store.key("busy"), str(i))
    assert len(store) == 2  # "kept" and "busy"


def test_hsetnx_many_sets_only_missing_fields_and_hincrby_counts(store: Store) -> None:
    key = store.key("h")
    assert store.hsetnx_many(key, {"a": "1"}) == [True]
    assert store.hsetnx_many(key, {"a": "2", "b": "3"}) == [False, True]
    assert store.hgetall(key) == {"a": "1", "b": "3"}
    assert store.hsetnx_many(key, {}) == []
    assert store.hincrby(key, "v") == 1
    assert store.hincrby(key, "v", 2) == 3
    assert store.hmget(key, "v") == ["3"]


def test_take_turn_gives_each_period_to_one_owner(store: Store) -> None:
    assert store.take_turn("sweep", 30, "a", now=3000.0)
    assert not store.take_turn("sweep", 30, "b", now=3010.0)  # same period
    assert not store.take_turn("sweep", 30, "a", now=3029.9)
    assert store.take_turn("sweep", 30, "b", now=3030.0)  # the next period: whoever asks
    assert store.take_turn("digest", 30, "a", now=3030.0)  # jobs do not share turns



def test_zrem_takes_members_off_a_sorted_set_and_the_last_one_the_key(store: Store) -> None:
    """The pending approvals' index: an entry leaves once its expiry is announced."""
    index = store.key("due")
    for member, at in (("apr-b", 20.0), ("apr-a", 10.0), ("apr-c", 30.0)):
        store.zadd_trimmed(index, member, at, keep_from=float("-inf"))
    assert store.zrange_by_score(index, float("-inf"), 25.0) == [("apr-a", 10.0),
                                                                 ("apr-b", 20.0)]
    assert store.zrem(index, "apr-b", "apr-nope") == 1
    assert store.zrem(index) == 0
    assert [m for m, _ in store.zrange_by_score(index, float("-inf"))] == ["apr-a", "apr-c"]
    assert store.zrem(index, "apr-a", "apr-c") == 2
    assert store.zrange_by_score(index, float("-inf")) == []
    assert store.zrem(store.key("never"), "x") == 0
    if isinstance(store, MemoryStore):
        assert len(store) == 0
    else:
        assert store.client.exists(index, store.key("never")) == 0


@pytest.mark.integration
def test_the_fleet_view_shares_one_connection_under_a_prefix_no_cluster_reaches() -> None:
    with redis_store(prefix="ipb:prod-eu") as eu, redis_store(prefix="ipb:prod-us") as us:
        assert eu.fleet().client is eu.client  # one connection pool, not one more per view
        eu.fleet().put(eu.fleet().key("presence", "prod-eu"), "alive", ttl=5)
        assert us.fleet().get(us.fleet().key("presence", "prod-eu")) == "alive"
        assert eu.get(eu.key("presence", "prod-eu")) is None  # a cluster's keys stay its own
        assert eu.prefix == "ipb:prod-eu"
        eu.fleet().delete(eu.fleet().key("presence", "prod-eu"))


def test_the_fleet_view_of_a_memory_store_is_the_same_memory() -> None:
    store = MemoryStore("ipb:dev")
    store.fleet().put(store.fleet().key("x"), "1")
    assert store.fleet().get("ipb-fleet:x") == "1"
    assert store.get("ipb:dev:x") is None


@pytest.mark.integration
def test_stores_under_another_root_share_a_fleet_of_their_own() -> None:
    with redis_store() as test_store:
        root = test_store.prefix
        a, b = RedisStore(REDIS_URL, f"{root}:prod-eu"), RedisStore(REDIS_URL, f"{root}:prod-us")
        a.fleet().put(a.fleet().key("presence", "prod-eu"), "alive", ttl=5)
        assert b.fleet().get(b.fleet().key("presence", "prod-eu")) == "alive"
        production = RedisStore(REDIS_URL, "ipb:prod-eu").fleet()
        assert production.prefix == "ipb-fleet"
        assert production.get(production.key("presence", "prod-eu")) is None  # not a test's
        assert a.fleet().prefix == f"{root}-fleet"
