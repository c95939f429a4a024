"""Which cluster a `/imagepull` command names (bot/chatops/routing.py; issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_bolt import BoltRequest

from bot.app import build_bolt_app, build_runtime
from bot.chatops.commands import Diagnose, Restart, parse_command
from bot.chatops.routing import ClusterNameError, split_cluster
from bot.config import Settings
from bot.kube.client import KubeClient
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.store import MemoryStore
from tests.support.fleet import Fleet
from tests.support.fleet_checks import texts
from tests.support.redis import redis_store
from tests.support.slack_requests import ALERTS, slash_command
from tests.support.waiting import wait_for


@pytest.mark.parametrize(("text", "cluster", "rest"), [
    ("diagnose prod-eu/shop/web-1", "prod-eu", "diagnose shop/web-1"),
    ("diagnose shop/web-1", None, "diagnose shop/web-1"),
    ("diagnose shop/web-1 --cluster prod-us", "prod-us", "diagnose shop/web-1"),
    ("diagnose --cluster=prod-us shop/web-1", "prod-us", "diagnose shop/web-1"),
    ("bundle prod-eu/shop/web-1", "prod-eu", "bundle shop/web-1"),
    ("restart shop/deployment/web", None, "restart shop/deployment/web"),
    ("restart prod-eu/shop/deployment/web", "prod-eu", "restart shop/deployment/web"),
    ("audit prod-eu/shop", "prod-eu", "audit shop"),
    ("audit shop", None, "audit shop"),
    ("verify-secret prod-eu/shop/regcred --image nginx:1", "prod-eu",
     "verify-secret shop/regcred --image nginx:1"),
    ("quota", None, "quota"),
    ("help", None, "help"),
    ("", None, ""),
])
def test_the_cluster_a_command_names(text: str, cluster: str | None, rest: str) -> None:
    assert split_cluster(text) == (cluster, rest)


def test_what_is_left_parses_as_on_one_cluster() -> None:
    _, rest = split_cluster("diagnose prod-eu/shop/web-1")
    assert parse_command(rest) == Diagnose("shop", "web-1")
    _, rest = split_cluster("restart --cluster prod-eu shop/deploy/web")
    assert parse_command(rest) == Restart("shop", "Deployment", "web")


@pytest.mark.parametrize("text", ["diagnose Prod_EU/shop/web-1", "diagnose shop/web --cluster",
                                  "diagnose a/b --cluster x --cluster y",
                                  "diagnose shop/web --cluster=<!channel>"])
def test_a_bad_cluster_name_is_refused(text: str) -> None:
    with pytest.raises(ClusterNameError):
        split_cluster(text)


def test_the_bus_exists_with_redis_only(tmp_path: Path) -> None:
    """Without Redis the bot is single-cluster: no routing, no consumer."""
    settings = Settings(CLUSTER_NAME="solo", SLACK_BOT_TOKEN="xoxb-test")  # type: ignore[call-arg]
    with SimCluster() as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        kube = KubeClient.from_environment(str(kubeconfig))
        assert build_runtime(settings, kube=kube, store=MemoryStore()).bus is None
        with redis_store() as store:
            runtime = build_runtime(settings, kube=kube, store=store)
            assert runtime.bus is not None
            assert runtime.bus.stream("solo") == runtime.store.fleet().key("bus", "solo")


@pytest.mark.parametrize(("env", "says"), [
    ({}, "set REDIS_URL to it on every cluster's agent"),
    ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "set SLACK_SIGNING_SECRET"),
    ({"REDIS_URL": "redis://127.0.0.1:1/0", "SLACK_SIGNING_SECRET": "s"},
     "the shared Redis did not answer"),
])
def test_a_command_for_another_cluster_that_could_not_be_routed_says_what_is_missing(
        tmp_path: Path, env: dict[str, str], says: str) -> None:
    """The listener sees a command naming another cluster only when routing could not send
    it (bot/chatops/bus/ routes HTTP and Socket Mode alike): it refuses in words that name
    what to set. Dispatched as Slack's Socket Mode delivers it, through the real Bolt app."""
    with SimCluster() as sim, SlackStandIn() as slack:
        settings = Settings(CLUSTER_NAME="solo", SLACK_BOT_TOKEN=slack.token,  # type: ignore[call-arg]
                            SLACK_API_URL=slack.api_url, SLACK_ALERT_CHANNEL="#alerts", **env)
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        runtime = build_runtime(settings, kube=kube, store=MemoryStore())
        bolt = build_bolt_app(settings, runtime)
        response = bolt.dispatch(BoltRequest(mode="socket_mode", body={
            "command": "/imagepull", "text": "diagnose prod-us/shop/web-1",
            "user_id": "U0ALICE001", "channel_id": "C0ALERTS01", "team_id": "T0TEAM0001",
            "response_url": "http://127.0.0.1:1/unused", "trigger_id": "1.2.3"}))
    assert response.status == 200, (response.status, response.body)
    said = response.body  # a text ack: Bolt's body for `ack(text=...)`
    assert said.startswith("⚠️ This agent watches `solo`, not `prod-us`, and could not "
                           "forward the request, so nothing was run: "), said
    assert says in said, said


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_clusters_is_answered_by_the_agent_that_receives_it(
        agents: Fleet, sims: tuple[SimCluster, SimCluster]) -> None:
    """`/imagepull clusters` is about the whole fleet (the presence every agent shares): with
    two clusters reporting, the receiving agent answers it itself, not "Several clusters answer
    here. Say which" (what it said before `make demo DEMO_ARGS=--fleet` showed it); nor is it
    sent to the channel's default cluster (CHANNEL_CLUSTERS), which may be the silent one."""
    a, b = agents.name("eu"), agents.name("us")
    agents.beat(a)
    receiver = agents.replica(a, sims[0], CHANNEL_CLUSTERS=f"{ALERTS[0]}={b}")
    for silent_for in (0, 600):  # B reporting, then B silent for 10 min
        agents.beat(b, ago=silent_for)
        name = f"clusters-{silent_for}"
        reply = receiver.client.form(slash_command(
            "clusters", channel_id=ALERTS[0], response_url=agents.slack.response_url(name)))
        assert reply.status == 200 and "Several clusters" not in reply.text, reply.text
        assert "has not reported" not in reply.text, reply.text
        [listing] = wait_for(lambda: texts(agents.slack, name), 10, "the listing")  # noqa: B023
        assert "2 cluster(s)" in listing and f"{1 if silent_for else 0} silent" in listing, \
            listing
    assert not agents.redis.exists(agents.fleet_key("bus", b))  # nothing crossed the bus
