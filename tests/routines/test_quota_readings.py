"""Quota readings shared between the quota watch and the cause watch (bot/routines/quota.py
`QuotaReadings`): a fresh figure for an account is reused, not asked twice; a stale one, or a
failed read, is asked again. Against the Docker Hub stand-in (it records every HEAD) and real
Redis (two store clients on one prefix are two replicas); the wiring through the composition
root (bot/app.py) is checked on the routines `build_runtime` makes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_runtime
from bot.config import load_settings
from bot.kube.client import KubeClient
from bot.registry.model import RegistryCredentials
from bot.routines.cleared import CauseWatch
from bot.routines.quota import QuotaReadings, QuotaWatch, quota_reader
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from tests.support.redis import redis_store
from tests.support.stubs import HUB_PASSWORD, HUB_USER, DockerHubStub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

QUOTA_CHECK = "/v2/ratelimitpreview/test/manifests/latest"
ACCOUNT = RegistryCredentials(HUB_USER, HUB_PASSWORD)


def checks(hub: DockerHubStub) -> int:
    return sum(1 for r in hub.requests if r.path == QUOTA_CHECK)


@pytest.fixture
def hub() -> Iterator[DockerHubStub]:
    with DockerHubStub(users={HUB_USER: HUB_PASSWORD}, remaining=40) as stub:
        yield stub


def test_a_fresh_reading_is_reused_across_replicas_and_a_stale_one_asked_again(
        hub: DockerHubStub) -> None:
    read = quota_reader(hub.realm, hub.url, 5)
    with redis_store() as a, redis_store(prefix=a.prefix) as b:
        watch_side = QuotaReadings(a, fresh_for=1.0).recording(read)
        cause_side = QuotaReadings(b, fresh_for=1.0).reusing(read)
        assert watch_side(ACCOUNT).remaining == 40
        assert checks(hub) == 1
        hub.remaining = 39
        assert cause_side(ACCOUNT).remaining == 40  # the other replica's figure, not asked
        assert checks(hub) == 1
        assert cause_side(None).remaining == 39  # the anonymous quota is another owner
        assert checks(hub) == 2
        time.sleep(1.1)
        assert cause_side(ACCOUNT).remaining == 39  # stale: asked again
        assert checks(hub) == 3
        # the recording side always asks (the quota watch keeps its own schedule)
        watch_side(ACCOUNT)
        assert checks(hub) == 4
        # what is kept holds no password
        stored = a.get(QuotaReadings(a)._key(ACCOUNT))
        assert stored is not None and HUB_USER in stored and HUB_PASSWORD not in stored


def test_a_failed_read_is_not_kept(hub: DockerHubStub) -> None:
    read = quota_reader(hub.realm, hub.url, 5)
    wrong = RegistryCredentials(HUB_USER, "not-the-password")
    with redis_store() as store:
        readings = QuotaReadings(store)
        assert readings.reusing(read)(wrong).error is not None
        assert readings.fresh(wrong) is None
        assert readings.reusing(read)(ACCOUNT).remaining == 40
        kept = readings.fresh(ACCOUNT)
        assert kept is not None and kept.username == HUB_USER and kept.authenticated
        assert HUB_PASSWORD not in json.dumps(kept.__dict__)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: DockerHubStub) -> Iterator[dict]:
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_API_URL": slack.api_url, "SLACK_ALERT_CHANNEL": "#imagepull-alerts",
            "REGISTRY_PROBE": "false", "DOCKERHUB_AUTH_URL": hub.realm,
            "DOCKERHUB_REGISTRY_URL": hub.url,
        }.items():
            monkeypatch.setenv(name, value)
        yield {"store": store, "kubeconfig": str(kubeconfig)}


def test_the_cause_watch_reuses_the_quota_watchs_reading(
        env: dict, hub: DockerHubStub, monkeypatch: pytest.MonkeyPatch) -> None:
    def built() -> tuple[QuotaWatch | None, CauseWatch]:
        runtime = build_runtime(load_settings(),
                                kube=KubeClient.from_environment(env["kubeconfig"]),
                                store=env["store"])
        by_name = {r.name: getattr(r.run, "__self__", None) for r in runtime.routines}
        quota, cause = by_name.get("dockerhub-quota"), by_name["cause-watch"]
        assert isinstance(cause, CauseWatch)
        assert quota is None or isinstance(quota, QuotaWatch)
        return quota, cause

    quota, cause = built()
    assert quota is not None and cause.read_quota is not None
    quota.read_quota(ACCOUNT)  # the quota watch's check of the account
    assert checks(hub) == 1
    assert cause.read_quota(ACCOUNT).remaining == 40
    assert checks(hub) == 1  # reused: Docker Hub was not asked twice
    # no quota checks (no route to Docker Hub): the cause watch does not ask either
    monkeypatch.setenv("QUOTA_CHECK_INTERVAL_SECONDS", "0")
    quota, cause = built()
    assert quota is None and cause.read_quota is None
