"""Two clusters' whole bots, one Redis, one Slack (issue 13, Deliver 5): the same registry's
DNS outage in both is two alerts that name and link each other, and `build_runtime` wires the
fleet index only when REDIS_URL is set.

Each bot is built as `python -m bot serve` builds it (settings from the environment), against
its own scenario cluster, posting to its own channel of one Slack stand-in.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import Message, SlackStandIn
from bot.store import RedisStore
from tests.support.faults import Bot, apply, bot_environment
from tests.support.redis import REDIS_URL, redis_store
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CLUSTERS = {"prod-eu": ("alerts-eu", "C0FLEETEU"), "prod-us": ("alerts-us", "C0FLEETUS")}


@pytest.fixture
def host() -> Iterator[str]:
    name = f"reg-{uuid.uuid4().hex[:8]}.example.com"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"ipb-fleet:shared:*:{name}"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def dns_outage(host: str, name: str) -> list[dict]:
    image = f"{host}/shop/{name}:v3"
    return factory.failing_deployment("shop", name, image,
                                      factory.containerd_error("dns", image))


def start(cluster: str, sim: SimCluster, slack: SlackStandIn, store: RedisStore,
          tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Bot:
    channel, cid = CLUSTERS[cluster]
    slack.add_channel(channel, cid)
    env = bot_environment(sim, slack, tmp_path / f"{cluster}.kubeconfig", CLUSTER_NAME=cluster,
                          SLACK_ALERT_CHANNEL=f"#{channel}", **extra)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    own = copy.copy(store)  # `ipb:<CLUSTER_NAME>` in production; under the test's prefix here
    own.prefix = f"{store.prefix}:{cluster}"
    return Bot(store=own)


def also_line(message: Message) -> str:
    return " ".join(str(e.get("text", "")) for b in message.blocks
                    for e in b.get("elements") or [] if "Also failing in" in str(e.get("text")))


def test_two_clusters_link_each_others_alert_of_one_registry_outage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    with SimCluster() as eu_sim, SimCluster() as us_sim, SlackStandIn() as slack, \
            redis_store() as store:
        bots = [start("prod-eu", eu_sim, slack, store, tmp_path, monkeypatch,
                      REDIS_URL=REDIS_URL),
                start("prod-us", us_sim, slack, store, tmp_path, monkeypatch,
                      REDIS_URL=REDIS_URL)]
        try:
            assert all(b.runtime.manager.shared is not None for b in bots)
            apply(eu_sim, dns_outage(host, "web"))
            apply(us_sim, dns_outage(host, "api"))

            def linked() -> bool:
                eu, us = (slack.channel_history(c) for c, _ in CLUSTERS.values())
                return (len(eu) == 1 and len(us) == 1 and "prod-us" in also_line(eu[0])
                        and "prod-eu" in also_line(us[0]))
            wait_for(linked, 30, "both roots naming the other cluster")
            [eu_root] = slack.channel_history("alerts-eu")
            [us_root] = slack.channel_history("alerts-us")
            assert f"/archives/C0FLEETUS/p{us_root.ts.replace('.', '')}|prod-us>" in \
                also_line(eu_root)
            assert f"/archives/C0FLEETEU/p{eu_root.ts.replace('.', '')}|prod-eu>" in \
                also_line(us_root)
        finally:
            for bot in bots:
                bot.stop()


def test_without_redis_url_there_is_no_fleet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-cluster bot (no REDIS_URL): nothing reads or writes fleet keys."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store:
        bot = start("prod-eu", sim, slack, store, tmp_path, monkeypatch)
        try:
            assert bot.runtime.manager.shared is None
        finally:
            bot.stop()
