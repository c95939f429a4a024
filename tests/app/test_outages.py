"""Outages lose nothing: Redis going away mid-incident, Slack refusing connections.

Redis here is a private redis-server on its own port (the shared one must stay up for other
tests), stopped and restarted by the test; the rest is the real bot against the stand-ins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, build_runtime
from bot.config import load_settings
from bot.kube.client import KubeClient
from bot.sim import factory
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.faults import bot_environment
from tests.support.private_redis import PrivateRedis
from tests.support.waiting import wait_for as _wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    return _wait_for(condition, timeout, what)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        redis_server: PrivateRedis) -> Iterator[dict[str, Any]]:
    with SimCluster() as sim, SlackStandIn() as slack:
        settings = bot_environment(sim, slack, tmp_path / "kc", REDIS_URL=redis_server.url)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield {"sim": sim, "slack": slack, "redis": redis_server}


def start_bot() -> Runtime:
    settings = load_settings()
    runtime = build_runtime(settings, kube=KubeClient.from_environment(settings.kubeconfig))
    for watcher in runtime.watchers:
        watcher.idle_timeout = 0.5
    runtime.start()
    return runtime


def bad_tag(name: str) -> list[dict[str, Any]]:
    image = f"registry.internal/shop/{name}:v9"
    return factory.failing_deployment("shop", name, image,
                                      factory.containerd_error("not_found", image))


def test_redis_outage_delays_the_alert_and_loses_nothing(env: dict[str, Any]) -> None:
    sim, slack, redis_server = env["sim"], env["slack"], env["redis"]
    runtime = start_bot()
    try:
        redis_server.stop()
        for obj in bad_tag("web"):
            sim.apply(obj)
        time.sleep(2.5)  # signals arrive while Redis is down: kept and retried
        assert slack.channel_history("imagepull-alerts") == []
        redis_server.start()  # back, and empty (no persistence)
        wait_for(lambda: slack.channel_history("imagepull-alerts"), what="the alert after Redis")
        time.sleep(1.5)
        assert len(slack.channel_history("imagepull-alerts")) == 1
    finally:
        runtime.stop()


def test_slack_unreachable_then_back_posts_once(env: dict[str, Any]) -> None:
    sim, slack = env["sim"], env["slack"]
    runtime = start_bot()
    try:
        slack.down(refuse=True)
        for obj in bad_tag("api"):
            sim.apply(obj)
        time.sleep(3)
        slack.up()
        wait_for(lambda: slack.channel_history("imagepull-alerts"), what="the alert")
        time.sleep(1.5)
        assert len(slack.channel_history("imagepull-alerts")) == 1
    finally:
        runtime.stop()
