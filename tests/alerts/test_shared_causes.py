"""One registry outage seen by several clusters (issue 13, Deliver 5): each alert says so.

Two IncidentManagers with different cluster names on one real Redis (each under its own
cluster prefix, sharing `Store.fleet()` as production does), each posting through the real
slack_sdk to its own channel of one Slack stand-in. Diagnoses come from the real engine on
kubelet-shaped pods and events; time is passed to `tick(now=...)`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from bot.alerts.incidents import IncidentManager, Timing
from bot.alerts.shared_causes import ENTRY_TTL, REFRESH_AFTER, SharedCauses
from bot.diagnosis.causes import Cause
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.diagnosis.model import PodDiagnosis
from bot.sim.slack import Message, SlackStandIn
from bot.slack.notifier import SlackNotifier, web_client
from bot.store import RedisStore, Store
from tests.diagnosis.kubelet import NOW, pod, pull_failure
from tests.support.redis import REDIS_URL

pytestmark = pytest.mark.integration

TIMING = Timing(group_wait=10, group_interval=60, repeat_interval=3600)
T0 = NOW.timestamp()
DNS = ('failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
       'failed to do request: Head "https://{host}/v2/{repo}/manifests/1.0": dial tcp: '
       'lookup {host} on 10.96.0.10:53: no such host')
NOT_FOUND = ('rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
             'failed to resolve reference "{image}": {image}: not found')
CHANNELS = {"prod-eu": ("alerts-eu", "C0ALERTSEU"), "prod-us": ("alerts-us", "C0ALERTSUS")}


@pytest.fixture
def host() -> Iterator[str]:
    """A registry host of this test alone (the fleet index is keyed by it); the test store's
    fleet, and so the index, is removed with the store (tests/support/redis.py)."""
    yield f"reg-{uuid.uuid4().hex[:8]}.example.com"


def failing(deployment: str, index: int, image: str, error: str) -> PodDiagnosis:
    name = f"{deployment}-7d9f8b6c5d-{index:05d}"
    facts = PodFacts(pod=pod(image, name=name, container=deployment,
                             owner=("ReplicaSet", f"{deployment}-7d9f8b6c5d")),
                     events=pull_failure(image, error, pod_name=name, container=deployment),
                     now=NOW)
    result = diagnose(facts)
    assert result.diagnoses, name
    return result


def dns_outage(host: str, deployment: str, index: int = 0) -> PodDiagnosis:
    image = f"{host}/{deployment}:1.0"
    result = failing(deployment, index, image,
                     DNS.format(image=image, host=host, repo=deployment))
    assert result.diagnoses[0].cause is Cause.DNS_FAILURE
    return result


def bad_tag(host: str, deployment: str) -> PodDiagnosis:
    image = f"{host}/{deployment}:lates"
    result = failing(deployment, 0, image, NOT_FOUND.format(image=image))
    assert result.diagnoses[0].cause is Cause.TAG_NOT_FOUND
    return result


@dataclass
class Agent:
    """One cluster's agent (incident side): its own cluster keys, the shared fleet keys."""

    name: str
    channel: str
    manager: IncidentManager

    def observe(self, *results: PodDiagnosis, at: float = T0) -> None:
        for result in results:
            self.manager.observe(result, now=at)

    def tick(self, at: float) -> None:
        self.manager.tick(now=at)

    def recovered(self, result: PodDiagnosis) -> None:
        self.manager.pod_recovered(result.namespace, result.pod)


def cluster_store(store: RedisStore, cluster: str) -> RedisStore:
    """The test store under `<test prefix>:<cluster>` (as `ipb:<CLUSTER_NAME>` in production),
    on the same connection: its keys are removed with the test's, its `fleet()` is shared."""
    view = store.of_cluster(cluster)
    assert isinstance(view, RedisStore)
    return view


def agent(slack: SlackStandIn, store: RedisStore, cluster: str,
          link: bool = True) -> Agent:
    name, cid = CHANNELS.get(cluster, ("alerts-other", "C0ALERTSOT"))
    slack.add_channel(name, cid)
    own = cluster_store(store, cluster)
    notifier = SlackNotifier(web_client(slack.token, slack.api_url), cid, own,
                             min_interval=0.01)
    shared = SharedCauses(own.fleet(), cluster, link=notifier.permalink if link else None)
    return Agent(cluster, cid, IncidentManager(own, notifier, cluster=cluster, timing=TIMING,
                                               shared=shared))


def root(slack: SlackStandIn, channel: str) -> Message:
    [message] = slack.channel_history(channel)
    return message


def also_line(message: Message) -> str | None:
    """The text of the root's "Also failing in" context line as it reads now, or None."""
    for block in message.blocks:
        for element in block.get("elements") or []:
            text = str(element.get("text", ""))
            if "Also failing in" in text:
                return text
    return None


def permalink_of(slack: SlackStandIn, channel: str, ts: str) -> str:
    [answer] = [c.response for c in slack.calls_to("chat.getPermalink")
                if c.ok and c.params.get("channel") == channel
                and c.params.get("message_ts") == ts]
    return str(answer["permalink"])


def test_a_dns_outage_in_two_clusters_links_both_threads(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    eu, us = agent(slack, store, "prod-eu"), agent(slack, store, "prod-us")
    eu.observe(dns_outage(host, "web"), dns_outage(host, "api"))
    eu.tick(T0 + 10)
    eu_root = root(slack, eu.channel)
    assert also_line(eu_root) is None  # nobody else fails yet
    us.observe(dns_outage(host, "web", 1), at=T0 + 20)
    us.tick(T0 + 30)  # its root goes out already naming prod-eu, with eu's thread link
    us_root = root(slack, us.channel)
    eu_link = permalink_of(slack, eu.channel, eu_root.ts)
    line = also_line(us_root)
    assert line is not None and f"<{eu_link}|prod-eu>" in line
    eu.tick(T0 + 40)  # not yet: eu looks again once per group_interval
    assert also_line(root(slack, eu.channel)) is None
    eu.tick(T0 + 71)
    us_link = permalink_of(slack, us.channel, us_root.ts)
    line = also_line(root(slack, eu.channel))
    assert line is not None and f"<{us_link}|prod-us>" in line
    assert "prod-eu" not in line  # never itself
    # the index, as other agents and people read it
    index = store.fleet().hgetall(store.fleet().key("shared", Cause.DNS_FAILURE.value, host))
    assert set(index) == {"prod-eu", "prod-us"}
    assert json.loads(index["prod-us"])["thread_ts"] == us_root.ts
    assert json.loads(index["prod-eu"])["pods"] == 2
    # one edit of eu's root for it, none of us's: nothing changed for us
    eu.tick(T0 + 72)
    us.tick(T0 + 95)
    assert len(root(slack, eu.channel).edits) == 1
    assert root(slack, us.channel).edits == []


def test_one_cluster_resolves_and_the_other_drops_it(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    eu, us = agent(slack, store, "prod-eu"), agent(slack, store, "prod-us")
    eu_pod, us_pod = dns_outage(host, "web"), dns_outage(host, "web", 1)
    eu.observe(eu_pod)
    us.observe(us_pod)
    eu.tick(T0 + 10)
    us.tick(T0 + 10)
    eu.tick(T0 + 70)  # learns of prod-us
    assert "prod-us" in str(also_line(root(slack, eu.channel)))
    us.recovered(us_pod)
    us.tick(T0 + 80)  # resolved: its entry leaves the index
    assert "Resolved" in root(slack, us.channel).text
    key = store.fleet().key("shared", Cause.DNS_FAILURE.value, host)
    assert set(store.fleet().hgetall(key)) == {"prod-eu"}
    eu.tick(T0 + 100)  # not yet looked again
    assert "prod-us" in str(also_line(root(slack, eu.channel)))
    eu.tick(T0 + 131)
    assert also_line(root(slack, eu.channel)) is None
    eu.recovered(eu_pod)
    eu.tick(T0 + 140)
    assert store.fleet().hgetall(key) == {}


def test_a_per_workload_cause_in_two_clusters_is_not_linked(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    eu, us = agent(slack, store, "prod-eu"), agent(slack, store, "prod-us")
    eu.observe(bad_tag(host, "web"))
    us.observe(bad_tag(host, "web"))
    for at in (T0 + 10, T0 + 71, T0 + 140):
        eu.tick(at)
        us.tick(at)
    assert also_line(root(slack, eu.channel)) is None
    assert also_line(root(slack, us.channel)) is None
    assert slack.calls_to("chat.getPermalink") == []
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert list(client.scan_iter(store.fleet().key("shared", "*", f"{host}*"))) == []
    finally:
        client.close()


def test_hostile_cluster_names_are_escaped(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    hostile = "<!channel> *x* <https://evil.example|click>`"
    eu, other = agent(slack, store, "prod-eu"), agent(slack, store, hostile, link=False)
    other.observe(dns_outage(host, "web"))
    other.tick(T0 + 10)
    eu.observe(dns_outage(host, "web", 1))
    eu.tick(T0 + 20)
    # a name that is no cluster name (CLUSTER_NAME is a DNS-1123 label) is not shown at all
    # (tests/security/test_fleet_hostile.py: markup, 1 MB names, a flood of fake clusters)
    assert also_line(root(slack, eu.channel)) is None


def test_a_forged_link_is_not_made_a_link(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    """The index is written by other agents: a link that is not a Slack permalink is not
    shown (as code it would still be a URL someone else wrote): the cluster's name is."""
    fleet = store.fleet()
    key = store.fleet().key("shared", Cause.DNS_FAILURE.value, host)
    fleet.hset(key, {"prod-us": json.dumps({
        "channel": "C1", "thread_ts": "1.2", "permalink": "https://evil.example/x",
        "opened_at": T0, "pods": 1, "seen_at": T0})}, ttl=60)
    eu = agent(slack, store, "prod-eu")
    eu.observe(dns_outage(host, "web"))
    eu.tick(T0 + 10)
    line = also_line(root(slack, eu.channel))
    assert line is not None and "evil" not in line and "prod-us" in line, line


def test_a_dead_clusters_entry_ages_out(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    """An agent that died never withdraws its entry: once it is not re-written for ENTRY_TTL
    it no longer counts, while a live agent's entry is re-written and keeps counting."""
    eu, us = agent(slack, store, "prod-eu"), agent(slack, store, "prod-us")
    eu.observe(dns_outage(host, "web"))
    us.observe(dns_outage(host, "web", 1))
    eu.tick(T0 + 10)
    us.tick(T0 + 10)
    eu.tick(T0 + 70)
    assert "prod-us" in str(also_line(root(slack, eu.channel)))
    # prod-us dies (never ticks again); prod-eu keeps ticking, and re-writes its own entry
    # only when it is a third of ENTRY_TTL old, not at every look
    key = store.fleet().key("shared", Cause.DNS_FAILURE.value, host)
    for at in (T0 + 130, T0 + 190, T0 + 250):
        eu.tick(at)
        assert json.loads(store.fleet().hgetall(key)["prod-eu"])["seen_at"] == T0 + 10
    at = T0 + 250
    while at < T0 + 10 + ENTRY_TTL + 120:
        at += 30
        eu.tick(at)
        seen_at = json.loads(store.fleet().hgetall(key)["prod-eu"])["seen_at"]
        assert at - seen_at < REFRESH_AFTER + 2 * TIMING.group_interval  # never near aging
    assert also_line(root(slack, eu.channel)) is None
    index = store.fleet().hgetall(key)
    assert json.loads(index["prod-eu"])["seen_at"] > T0 + ENTRY_TTL  # ours was re-written


def test_without_a_fleet_nothing_is_read_or_written(
        slack: SlackStandIn, store: Store, host: str) -> None:
    """A single-cluster bot (no Redis, so no SharedCauses) behaves as before."""
    notifier = SlackNotifier(web_client(slack.token, slack.api_url), "imagepull-alerts", store,
                             min_interval=0.01)
    manager = IncidentManager(store, notifier, cluster="solo", timing=TIMING)
    manager.observe(dns_outage(host, "web"), now=T0)
    manager.tick(now=T0 + 10)
    manager.tick(now=T0 + 80)
    assert also_line(root(slack, "imagepull-alerts")) is None
    assert slack.calls_to("chat.getPermalink") == []


def test_a_replica_with_an_older_look_never_edits_the_line_back(
        slack: SlackStandIn, store: RedisStore, host: str) -> None:
    """Two replicas of prod-eu read the index at different times: the one that read before
    prod-us joined must not edit the root back after the other showed prod-us."""
    eu_a, us = agent(slack, store, "prod-eu"), agent(slack, store, "prod-us")
    eu_b = agent(slack, store, "prod-eu")
    eu_a.observe(dns_outage(host, "web"))
    eu_a.tick(T0 + 10)  # root; a has read the index (nobody else)
    eu_b.tick(T0 + 15)  # b reads it too: nobody else
    eu_a.tick(T0 + 70)  # a looks again: still nobody
    us.observe(dns_outage(host, "web", 1), at=T0 + 71)
    us.tick(T0 + 81)
    eu_b.tick(T0 + 85)  # b looks again: prod-us, and edits the root
    assert "prod-us" in str(also_line(root(slack, eu_a.channel)))
    for at in (T0 + 86, T0 + 100, T0 + 131, T0 + 150):
        eu_a.tick(at)  # a's look (T0+70) is older than the root's: no edit back
        eu_b.tick(at)
        assert "prod-us" in str(also_line(root(slack, eu_a.channel)))
    assert len(root(slack, eu_a.channel).edits) == 1
