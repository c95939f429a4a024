"""A pod leaving a big incident reads only its own members, on real Redis.

In a 2,000-pod registry outage every recovery used to read the incident's whole member hash
(HGETALL of ~2,000 entries), so the outage ending read ~4 million entries. The Redis client
is wrapped to count what the bot reads (commands and entries returned); the bot's own logic
runs unpatched.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from bot.alerts.incidents import (
    MEMBER_INDEX,
    RESOLVED_RETENTION,
    Incident,
    IncidentManager,
    Member,
    Timing,
)
from bot.diagnosis.model import PodDiagnosis
from bot.store import MemoryStore, RedisStore
from tests.alerts.test_incidents import T0, outage

pytestmark = pytest.mark.integration

READS = {"hgetall", "hmget", "hget", "smembers", "get", "hkeys", "hvals", "sscan", "hscan"}


class CountingClient:
    """Passes every call to the real redis client; counts read commands and entries read."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.commands: Counter[str] = Counter()
        self.entries = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in READS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.commands[name] += 1
            if isinstance(result, dict | set | list):
                self.entries += len(result)
            return result
        return counted


class QuietNotifier:
    """A Slack that accepts every post (the thread contents are tested in test_incidents)."""

    def post_root(self, incident: Incident, part: str) -> tuple[str, str]:
        return "C1", "1.0"

    def post_update(self, incident: Incident, new: list[Member], recovered: list[Member],
                    part: str) -> None:
        pass

    def post_reminder(self, incident: Incident, now: float, part: str) -> None:
        pass

    def post_resolved(self, incident: Incident, part: str) -> None:
        pass

    def edit_root(self, incident: Incident) -> None:
        pass

    def posted(self, incident: Incident, part: str) -> tuple[str, str] | None:
        return None


def pods(count: int, deployment: str = "api") -> list[PodDiagnosis]:
    """`count` pods of one deployment failing on the same registry 429."""
    one = outage(deployment, 0)
    return [replace(one, pod=f"{deployment}-7d9f8b6c5d-{i:05d}") for i in range(count)]


def manager(store: RedisStore, cluster: str = "prod") -> IncidentManager:
    return IncidentManager(store, QuietNotifier(), cluster=cluster,
                           timing=Timing(group_wait=10, group_interval=60))


def recover_all(store: RedisStore, bot: IncidentManager,
                failing: list[PodDiagnosis]) -> tuple[list[int], list[int], float]:
    """Recover every pod one by one: (read commands per pod, entries read per pod, seconds)."""
    counting = CountingClient(store.client)
    store.client = counting  # type: ignore[assignment]
    commands, entries = [], []
    started = time.perf_counter()
    try:
        for result in failing:
            before_commands, before_entries = sum(counting.commands.values()), counting.entries
            bot.pod_recovered(result.namespace, result.pod)
            commands.append(sum(counting.commands.values()) - before_commands)
            entries.append(counting.entries - before_entries)
    finally:
        store.client = counting._client
    return commands, entries, time.perf_counter() - started


def test_recovering_2000_pods_reads_the_same_per_pod_as_recovering_20(
        store: RedisStore) -> None:
    small_bot, bot = manager(store, "small"), manager(store, "big")
    small, big = pods(20, "small"), pods(2000, "big")
    small_ids = {i for result in small for i in small_bot.observe(result, now=T0)}
    big_ids = {i for result in big for i in bot.observe(result, now=T0)}
    assert len(small_ids) == len(big_ids) == 1 and small_ids != big_ids
    [big_id] = big_ids
    incident = bot.load(big_id)
    assert incident is not None and len(incident.members) == 2000

    small_commands, small_entries, _ = recover_all(store, small_bot, small)
    big_commands, big_entries, seconds = recover_all(store, bot, big)
    print(f"2,000 recoveries: {seconds:.2f} s; read commands per pod "
          f"max {max(big_commands)}, entries read per pod max {max(big_entries)}; "
          f"total entries read {sum(big_entries)}")
    # the pod index, the incident's index flag, the pod's member set, its members: no more
    assert max(big_commands) <= 4 and max(small_commands) <= 4
    assert max(big_entries) <= max(small_entries) <= 6
    assert seconds < 10

    incident = bot.load(big_id)
    assert incident is not None and not incident.members
    assert len(incident.recovered) == 2000  # every member recorded for the thread update


def test_a_pod_with_members_in_an_incident_from_the_previous_version_still_leaves(
        store: RedisStore) -> None:
    bot = manager(store)
    failing = pods(5)
    for result in failing:
        [incident_id] = bot.observe(result, now=T0)
    # The previous version's shape: no index flag, no per-pod member sets.
    store.hdel(store.key("incident", incident_id), MEMBER_INDEX)
    pod_sets = store.smembers(store.key("incident", incident_id, "pods"))
    assert len(pod_sets) == 5
    store.delete(*pod_sets, store.key("incident", incident_id, "pods"))

    bot.pod_recovered(failing[0].namespace, failing[0].pod)
    incident = bot.load(incident_id)
    assert incident is not None
    assert len(incident.members) == 4 and len(incident.recovered) == 1
    # a pod observed again by this version, in the old incident: still found by the scan
    bot.observe(failing[1], now=T0 + 1)
    for result in failing[1:]:
        bot.pod_recovered(result.namespace, result.pod)
    incident = bot.load(incident_id)
    assert incident is not None and not incident.members and len(incident.recovered) == 5


def test_a_member_moves_between_incidents_and_back(store: RedisStore) -> None:
    """The pod's member set keeps ids it once had: a member that left and comes back is found."""
    bot = manager(store)
    [result] = pods(1)
    [first] = bot.observe(result, now=T0)
    bot.pod_recovered(result.namespace, result.pod)
    assert bot.observe(result, now=T0 + 1) == [first]
    incident = bot.load(first)
    assert incident is not None and set(incident.members) == {
        f"{result.namespace}/{result.pod}/api"} and not incident.recovered
    bot.pod_recovered(result.namespace, result.pod)
    incident = bot.load(first)
    assert incident is not None and not incident.members and len(incident.recovered) == 1


def test_resolving_expires_the_per_pod_member_sets(store: RedisStore) -> None:
    bot = manager(store)
    failing = pods(3)
    for result in failing:
        [incident_id] = bot.observe(result, now=T0)
    bot.tick(now=T0 + 11)  # root
    for result in failing:
        bot.pod_recovered(result.namespace, result.pod)
    bot.tick(now=T0 + 12)
    incident = bot.load(incident_id)
    assert incident is not None and incident.state == "resolved"
    pod_sets = store.smembers(store.key("incident", incident_id, "pods"))
    assert len(pod_sets) == 3
    for key in [*pod_sets, store.key("incident", incident_id, "pods")]:
        ttl = store.client.pttl(key)
        assert 0 < ttl <= RESOLVED_RETENTION * 1000, key


def test_the_memory_store_keeps_the_same_index() -> None:
    """MemoryStore (single-process runs, the demo) answers `hmget` like Redis does."""
    store = MemoryStore()
    store.hset("h", {"a": "1", "b": "2"})
    assert store.hmget("h", "b", "x", "a") == ["2", None, "1"]
    assert store.hmget("missing", "a") == [None]
    bot = IncidentManager(store, QuietNotifier(), cluster="prod")
    failing = pods(3)
    for result in failing:
        [incident_id] = bot.observe(result, now=T0)
    bot.pod_recovered(failing[1].namespace, failing[1].pod)
    incident = bot.load(incident_id)
    assert incident is not None
    assert set(incident.recovered) == {f"{failing[1].namespace}/{failing[1].pod}/api"}
    assert len(incident.members) == 2
