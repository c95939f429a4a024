"""`zadd_trimmed` / `zrange_by_score`: the bounded history (a sorted set by time, trimmed by
age in the same step that adds) behaves the same in Redis and in the in-process store."""

from __future__ import annotations

import time

import pytest

from bot.store import Store, StoreRefused

pytestmark = pytest.mark.integration


def test_adding_trims_what_is_older_than_keep_from(store: Store) -> None:
    history = store.key("history")
    for n, at in enumerate((100.0, 200.0, 300.0)):
        store.zadd_trimmed(history, f"r{n}", at, keep_from=0)
    assert store.zrange_by_score(history, 0) == [("r0", 100.0), ("r1", 200.0), ("r2", 300.0)]
    assert store.zrange_by_score(history, 150, 300) == [("r1", 200.0), ("r2", 300.0)]
    store.zadd_trimmed(history, "r3", 400.5, keep_from=200)  # r0 is older: gone
    assert store.zrange_by_score(history, 0) == [("r1", 200.0), ("r2", 300.0), ("r3", 400.5)]
    store.zadd_trimmed(history, "r1", 500, keep_from=200)  # same member: moved, not doubled
    assert [m for m, _ in store.zrange_by_score(history, 0)] == ["r2", "r3", "r1"]
    assert store.zrange_by_score(history, 600) == []


def test_the_history_expires_after_its_ttl(store: Store) -> None:
    history = store.key("history")
    store.zadd_trimmed(history, "r", 1.0, keep_from=0, ttl=0.2)
    assert store.zrange_by_score(history, 0) == [("r", 1.0)]
    time.sleep(0.3)
    assert store.zrange_by_score(history, 0) == []


def test_a_hash_is_not_a_history_and_a_history_is_not_a_hash(store: Store) -> None:
    record, history = store.key("record"), store.key("history")
    store.hset(record, {"a": "1"})
    store.zadd_trimmed(history, "r", 1.0, keep_from=0)
    with pytest.raises(StoreRefused):
        store.zadd_trimmed(record, "r", 1.0, keep_from=0)
    with pytest.raises(StoreRefused):
        store.zrange_by_score(record, 0)
    with pytest.raises(StoreRefused):
        store.hgetall(history)
    assert store.hgetall(record) == {"a": "1"}
