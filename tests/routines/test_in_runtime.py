"""The composition root schedules the watches the settings turn on (bot/app.py `_routines`):
the quota watch every QUOTA_CHECK_INTERVAL_SECONDS, the digest on DIGEST_CRON (a day's
period for the default), each off when its setting says so. And one real scheduler tick of
the quota routine, through `Runtime.start`, warns the channel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_runtime
from bot.config import load_settings
from bot.kube.client import KubeClient
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.redis import redis_store
from tests.support.stubs import DockerHubStub
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store, \
            DockerHubStub(remaining=3) as hub:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_API_URL": slack.api_url, "SLACK_ALERT_CHANNEL": "#imagepull-alerts",
            "REGISTRY_PROBE": "false", "DOCKERHUB_AUTH_URL": hub.realm,
            "DOCKERHUB_REGISTRY_URL": hub.url, "DIGEST_CRON": "0 9 * * *",
        }.items():
            monkeypatch.setenv(name, value)
        yield {"slack": slack, "store": store, "kubeconfig": str(kubeconfig)}


def routines(env: dict, monkeypatch: pytest.MonkeyPatch, **settings: str) -> dict:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    runtime = build_runtime(load_settings(), kube=KubeClient.from_environment(env["kubeconfig"]),
                            store=env["store"])
    return {r.name: r for r in runtime.routines}


def test_the_watches_are_in_the_runtime_and_each_can_be_turned_off(
        env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    built = routines(env, monkeypatch)
    # requests expire on time, and a fixed cause is noticed, whatever else is turned off
    # and, with Redis, every replica beats (issue 13: presence)
    always = {"approval-expiry", "cause-watch", "heartbeat"}
    assert set(built) == {"dockerhub-quota", "digest", *always}
    cause = built["cause-watch"]  # at the sweep's pace: "within one sweep" (issue 12)
    assert (cause.trigger, cause.period) == ("interval", load_settings().sweep_interval_seconds)
    quota, digest = built["dockerhub-quota"], built["digest"]
    assert (quota.trigger, quota.trigger_args, quota.period) == (
        "interval", {"seconds": 600.0}, 600.0)
    assert digest.trigger == "cron" and digest.period == 24 * 3600
    assert (digest.trigger_args["hour"], digest.trigger_args["minute"]) == ("9", "0")
    assert set(routines(env, monkeypatch, DIGEST_CRON="")) == {"dockerhub-quota", *always}
    assert set(routines(env, monkeypatch, QUOTA_CHECK_INTERVAL_SECONDS="0")) == always
    heartbeat = built["heartbeat"]
    assert heartbeat.every_replica and heartbeat.trigger_args == {"seconds": 15.0}
    assert set(routines(env, monkeypatch, QUOTA_CHECK_INTERVAL_SECONDS="0",
                        HEARTBEAT_SECONDS="0")) == always - {"heartbeat"}


def test_the_scheduler_runs_the_quota_watch(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTA_CHECK_INTERVAL_SECONDS", "0.3")
    runtime = build_runtime(load_settings(), kube=KubeClient.from_environment(env["kubeconfig"]),
                            store=env["store"])
    runtime.start(watch=False)
    try:
        slack = env["slack"]
        wait_for(lambda: slack.calls_to("chat.postMessage"), 10, "the quota warning")
        [warning] = slack.calls_to("chat.postMessage")
        assert "3 of 100 pulls left" in warning.params["text"]
    finally:
        runtime.stop()
