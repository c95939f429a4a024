"""Presence (issue 13): every replica of every cluster's agent beats into the fleet's presence
hash in the real Redis, `cluster_presence` reads every cluster back (reporting or silent for
how long), two clusters under one CLUSTER_NAME are named in an error, and `/imagepull
clusters` answers from it, through the runtime the composition root builds (two replicas of
two clusters, real scheduler ticks)."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.alerts.presence import (
    PRESENCE_TTL,
    cluster_presence,
    clusters_key,
    presence_key,
    read_presence,
)
from bot.app import build_runtime
from bot.chatops.commands import parse_command
from bot.config import load_settings
from bot.kube.client import KubeClient
from bot.routines.presence import Heartbeat
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.store import RedisStore
from tests.support.redis import redis_store
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> Iterator[RedisStore]:
    with redis_store() as store:
        yield store


@pytest.fixture
def names(store: RedisStore) -> Iterator[list[str]]:
    """Unique cluster names; their fleet keys (shared by every test) are removed after."""
    made: list[str] = []
    yield made
    store.delete(*(presence_key(store, name) for name in made))
    store.zrem(clusters_key(store), *made)


def cluster(names: list[str], label: str) -> str:
    names.append(f"{label}-{uuid.uuid4().hex[:8]}")
    return names[-1]


def beat(store: RedisStore, name: str, owner: str, clock: Clock, *, incidents: int = 0,
         last_event: float | None = None, uid: str | None = None,
         version: str = "1.2.3") -> Heartbeat:
    return Heartbeat(store, cluster=name, owner=owner, interval=15.0,
                     open_incidents=lambda: incidents,
                     last_watch_event_at=lambda: last_event,
                     uid=(lambda: uid), version=version, clock=clock)


def test_every_replica_beats_and_the_reader_sees_each_cluster(
        store: RedisStore, names: list[str]) -> None:
    clock = Clock()
    eu, us = cluster(names, "prod-eu"), cluster(names, "prod-us")
    eu_a = beat(store, eu, "eu-a", clock, incidents=2, last_event=clock.now - 30)
    eu_b = beat(store, eu, "eu-b", clock, incidents=2, last_event=clock.now - 30)
    us_a = beat(store, us, "us-a", clock, version="1.2.4")
    for heartbeat in (eu_a, eu_b, us_a):
        heartbeat.run()

    found = cluster_presence(store, clock.now)
    assert {eu, us} <= set(found)
    first = found[eu]
    assert (first.version, first.replicas, first.open_incidents) == ("1.2.3", 2, 2)
    assert first.last_watch_event_at == clock.now - 30
    assert first.silent_for(clock.now) == 0 and first.reporting(clock.now, 15.0)
    assert (found[us].replicas, found[us].version) == (1, "1.2.4")
    # the hash M1's bus reads: the contract's fields, as text, expiring within the hour
    raw = store.hgetall(presence_key(store, eu))
    assert {"heartbeat_at", "version", "last_watch_event_at", "open_incidents",
            "replicas"} <= set(raw)
    assert float(raw["heartbeat_at"]) == clock.now
    assert 0 < store.client.pttl(presence_key(store, eu)) <= PRESENCE_TTL * 1000

    # eu-b stops; after three missed beats it leaves the count (and its field the hash)
    clock.now += 50
    eu_a.run()
    assert read_presence(store, eu).replicas == 1
    assert "replica:eu-b" not in store.hgetall(presence_key(store, eu))
    # prod-us has not beaten for 50 s: silent, by how long
    us_now = cluster_presence(store, clock.now)[us]
    assert us_now.silent_for(clock.now) == 50 and not us_now.reporting(clock.now, 15.0)


def test_a_cluster_whose_hash_expired_is_still_listed_as_silent(
        store: RedisStore, names: list[str]) -> None:
    clock = Clock()
    gone = cluster(names, "staging")
    beat(store, gone, "a", clock).run()
    store.delete(presence_key(store, gone))  # what the hour's TTL does
    presence = cluster_presence(store, clock.now)[gone]
    assert presence.heartbeat_at == clock.now  # from the fleet's list of clusters
    assert presence.replicas is None
    assert presence.silent_for(clock.now + 7200) == 7200
    assert read_presence(store, gone).silent_for(clock.now) == math.inf


def test_two_clusters_under_one_name_are_named_in_an_error(
        store: RedisStore, names: list[str], caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    name = cluster(names, "prod")
    first = beat(store, name, "a", clock, uid="uid-first")
    second = beat(store, name, "b", clock, uid="uid-second")
    first.run()
    with caplog.at_level(logging.ERROR, logger="bot.routines.presence"):
        second.run()
        second.run()  # said once, not once a beat
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "uid-first" in errors[0] and "uid-second" in errors[0] and name in errors[0]
    # the same cluster's replicas (one uid) are not a duplicate
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="bot.routines.presence"):
        beat(store, name, "c", clock, uid="uid-second").run()
    assert not caplog.records


def test_the_default_cluster_name_beside_other_clusters_is_an_error(
        store: RedisStore, names: list[str], caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    other = cluster(names, "prod-eu")
    beat(store, other, "a", clock).run()
    names.append("default")
    try:
        with caplog.at_level(logging.ERROR, logger="bot.routines.presence"):
            beat(store, "default", "b", clock).run()
        [error] = [r.getMessage() for r in caplog.records]
        assert "CLUSTER_NAME is not set" in error and other in error
    finally:
        store.delete(presence_key(store, "default"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    with SimCluster() as sim, SlackStandIn() as slack:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_API_URL": slack.api_url, "SLACK_ALERT_CHANNEL": "#imagepull-alerts",
            "REGISTRY_PROBE": "false", "QUOTA_CHECK_INTERVAL_SECONDS": "0",
            "DIGEST_CRON": "", "AUDIT_CRON": "", "CREDENTIALS_WATCH_SECONDS": "0",
            "HEARTBEAT_SECONDS": "0.2",
        }.items():
            monkeypatch.setenv(name, value)
        yield {"kubeconfig": str(kubeconfig)}


def test_two_replicas_of_two_clusters_beat_and_clusters_lists_them(
        env: dict, store: RedisStore, names: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    eu, us = cluster(names, "prod-eu"), cluster(names, "prod-us")
    runtimes = []
    for name in (eu, eu, us, us):
        monkeypatch.setenv("CLUSTER_NAME", name)
        runtime = build_runtime(load_settings(),
                                kube=KubeClient.from_environment(env["kubeconfig"]),
                                store=store)
        [heartbeat] = [r for r in runtime.routines if r.name == "heartbeat"]
        assert heartbeat.every_replica and heartbeat.trigger_args == {"seconds": 0.2}
        runtimes.append(runtime)
    try:
        for runtime in runtimes:
            runtime.start(watch=False)
        wait_for(lambda: all(read_presence(store, n).replicas == 2 for n in (eu, us)), 10,
                 "two replicas of each cluster beating (every replica, every tick)")
        _, blocks = runtimes[0].interactive.run(parse_command("clusters"), "U1", "C1")
        body = "\n".join(b["text"]["text"] for b in blocks if "text" in b)
        for name in (eu, us):
            assert f"✅ *{name}* reporting" in body
        assert "2 replica(s)" in body and "0 open incident(s)" in body
        # prod-us's agents stop: within three beats it reads as silent
        for runtime in runtimes[2:]:
            runtime.stop()
        del runtimes[2:]
        time.sleep(0.8)
        _, blocks = runtimes[0].interactive.run(parse_command("clusters"), "U1", "C1")
        body = "\n".join(b["text"]["text"] for b in blocks if "text" in b)
        assert f"✅ *{eu}* reporting" in body and f"⚠️ *{us}* silent for" in body
    finally:
        for runtime in runtimes:
            runtime.stop()


def test_without_redis_there_is_no_heartbeat(env: dict) -> None:
    runtime = build_runtime(load_settings(), kube=KubeClient.from_environment(env["kubeconfig"]))
    assert "heartbeat" not in {r.name for r in runtime.routines}
    text, _ = runtime.interactive.run(parse_command("clusters"), "U1", "C1")
    assert "No cluster reports here" in text


def test_the_clusters_command_is_parsed_and_in_the_help() -> None:
    from bot.chatops.commands import HELP, Clusters, CommandError

    assert parse_command("clusters") == Clusters()
    assert "/imagepull clusters" in HELP
    with pytest.raises(CommandError, match="usage: `/imagepull clusters`"):
        parse_command("clusters prod-eu")


def test_a_cluster_name_from_redis_cannot_ping_a_channel() -> None:
    """Anyone who can write to the shared Redis can write a presence: its texts are escaped
    like every text from a cluster."""
    from bot.alerts.presence import Presence
    from bot.slack.blocks import clusters_message

    now = 1_800_000_000.0
    hostile = Presence(cluster="<!channel> <https://evil|x>", heartbeat_at=now,
                       version="`1`<!here>", replicas=1, open_incidents=0)
    text, blocks = clusters_message({hostile.cluster: hostile}, now, 15.0)
    assert text == "1 cluster(s), 0 silent"
    body = "\n".join(b["text"]["text"] for b in blocks)
    assert "<!channel>" not in body and "<!here>" not in body and "<https://" not in body
    assert "&lt;!channel&gt;" in body


def test_two_clusters_started_under_one_name_are_told_apart_by_their_kube_system_uid(
        tmp_path: Path, store: RedisStore, names: list[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two scenario clusters (two kube-system namespaces, two uids), both agents configured
    as one CLUSTER_NAME: the heartbeat reads each cluster's identity and names both."""
    name = cluster(names, "prod")
    with SimCluster() as first, SimCluster() as second, SlackStandIn() as slack:
        uids, runtimes = [], []
        for i, sim in enumerate((first, second)):
            namespace = sim.apply({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "kube-system"}})
            uids.append(namespace["metadata"]["uid"])
            kubeconfig = sim.write_kubeconfig(tmp_path / f"kubeconfig-{i}")
            for key, value in {"CLUSTER_NAME": name, "SLACK_BOT_TOKEN": slack.token,
                               "SLACK_API_URL": slack.api_url, "REGISTRY_PROBE": "false",
                               "QUOTA_CHECK_INTERVAL_SECONDS": "0", "DIGEST_CRON": "",
                               "AUDIT_CRON": "", "CREDENTIALS_WATCH_SECONDS": "0",
                               "HEARTBEAT_SECONDS": "0.2"}.items():
                monkeypatch.setenv(key, value)
            runtimes.append(build_runtime(load_settings(),
                                          kube=KubeClient.from_environment(str(kubeconfig)),
                                          store=store))
        assert uids[0] != uids[1]
        try:
            with caplog.at_level(logging.ERROR, logger="bot.routines.presence"):
                for runtime in runtimes:
                    runtime.start(watch=False)

                def named_both() -> bool:
                    return any(uids[0] in r.getMessage() and uids[1] in r.getMessage()
                               for r in caplog.records)

                wait_for(named_both, 10, "an error naming both clusters' uids")
        finally:
            for runtime in runtimes:
                runtime.stop()


@pytest.mark.parametrize("advertised", ["60.0", None, "1e9", "nan", "-5", "<!here>"])
def test_one_silence_rule_for_clusters_and_routing_from_the_clusters_own_interval(
        store: RedisStore, names: list[str], advertised: str | None) -> None:
    """A cluster is silent after three of *its own* heartbeat intervals (what its beat says),
    whichever agent reads it: `/imagepull clusters` and the bus decide from the same rule, so a
    cluster listed as reporting is one requests are sent to. An interval the beat does not
    give, or one no agent would use (anyone can write the hash), is the reader's own (15 s)."""
    from bot.alerts.presence import silent_after
    from bot.chatops.bus import FleetBus
    from bot.slack.blocks import clusters_message

    clock = Clock()
    slow = cluster(names, "slow")
    Heartbeat(store, cluster=slow, owner="slow-a", interval=60.0, open_incidents=lambda: 0,
              last_watch_event_at=lambda: None, clock=clock).run()
    if advertised is None:
        store.client.hdel(presence_key(store, slow), "heartbeat_seconds")
    else:
        store.client.hset(presence_key(store, slow), "heartbeat_seconds", advertised)
    threshold = 180.0 if advertised == "60.0" else 45.0
    assert silent_after(15.0) == 45.0 and silent_after(0) == 45.0  # HEARTBEAT_SECONDS=0 here
    bus = FleetBus(store.fleet(), cluster="reader", channel_clusters={},
                   heartbeat_seconds=15.0, clock=clock)
    start = clock.now
    for age, silent in ((threshold - 1, False), (threshold + 1, True)):
        clock.now = start + age
        presence = cluster_presence(store, clock.now)[slow]
        text, _ = clusters_message({slow: presence}, clock.now, 15.0)
        assert text == f"1 cluster(s), {int(silent)} silent", (age, text)
        assert bus.silent_for(slow) == (age if silent else None), age
