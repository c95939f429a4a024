"""Which cluster a `/imagepull` command names (bot/chatops/routing.py; issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import build_runtime
from bot.chatops.commands import Diagnose, Restart, parse_command
from bot.chatops.routing import ClusterNameError, split_cluster
from bot.config import Settings
from bot.kube.client import KubeClient
from bot.sim.server import SimCluster
from bot.store import MemoryStore
from tests.support.redis import redis_store


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
