"""The Docker Hub quota watch (bot/routines/quota.py) against real parts: the Docker Hub stand-in
(tests/support/stubs.py, its `remaining` set by the test), the Slack stand-in through the real
slack_sdk, real Redis (two store clients on one prefix are two replicas), and the scenario
cluster with the real fact watches for the pull secrets in use.

Must show (issue 11): the quota crossing the threshold down and back up, with several runs
per state and two replicas running, is exactly one warning and one recovery (in the warning's
thread); one quota check per Docker Hub account, not per secret; no password anywhere (the
suite's leak scan checks every Slack call and log line for the registered secrets)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from bot.kube.cache import KubeFactCache
from bot.kube.client import KubeClient
from bot.kube.fact_watch import WatchedFacts
from bot.routines.quota import QuotaWatch, quota_reader
from bot.sim.server import SimCluster
from bot.sim.slack import SlackCall, SlackStandIn
from bot.slack.notifier import web_client
from bot.store import Store
from tests.support.redis import redis_store
from tests.support.stubs import HUB_PASSWORD, HUB_USER, DockerHubStub, closed_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHANNEL = "imagepull-alerts"
OTHER_USER, OTHER_PASSWORD = "unused-account", "other-pass-do-not-print"


@pytest.fixture
def hub() -> Iterator[DockerHubStub]:
    with DockerHubStub(users={HUB_USER: HUB_PASSWORD, OTHER_USER: OTHER_PASSWORD},
                       remaining=76) as stub:
        yield stub


@pytest.fixture
def replicas() -> Iterator[tuple[Store, Store]]:
    with redis_store() as a, redis_store(prefix=a.prefix) as b:
        yield a, b


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with SimCluster() as cluster:
        yield cluster


@pytest.fixture
def kube(sim: SimCluster, tmp_path: Path) -> Iterator[KubeClient]:
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        yield KubeClient(api, KubeFactCache(fresh_seconds=30))
    finally:
        api.close()


def watch(store: Store, slack: SlackStandIn, hub: DockerHubStub, kube: KubeClient, *,
          facts: WatchedFacts | None = None, auth_url: str | None = None) -> QuotaWatch:
    """One replica's quota watch, built as bot/app.py builds it."""
    return QuotaWatch(store, web_client("xoxb-test-token", slack.api_url), CHANNEL, kube=kube,
                      facts=facts, warn_below=20,
                      read_quota=quota_reader(auth_url or hub.realm, hub.url, 5))


def posts(slack: SlackStandIn) -> list[SlackCall]:
    return slack.calls_to("chat.postMessage")


def text_of(call: SlackCall) -> str:
    return json.dumps(call.params)


def pull_secret(name: str, namespace: str, server: str, user: str, password: str) -> dict:
    config_json = {"auths": {server: {"username": user, "password": password}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": namespace},
            "data": {".dockerconfigjson":
                     base64.b64encode(json.dumps(config_json).encode()).decode()}}


def account(name: str, namespace: str, *secrets: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
            "imagePullSecrets": [{"name": s} for s in secrets]}


def test_the_ip_quota_down_and_back_up_is_one_warning_and_one_recovery_across_replicas(
        hub: DockerHubStub, slack: SlackStandIn, replicas: tuple[Store, Store],
        kube: KubeClient) -> None:
    a, b = (watch(store, slack, hub, kube) for store in replicas)
    for _ in range(3):  # plenty left: nothing to say
        a.run()
        b.run()
    assert posts(slack) == []

    hub.remaining = 12
    for _ in range(3):
        a.run()
        b.run()
    [warning] = posts(slack)
    text = text_of(warning)
    assert "12 of 100 pulls left" in text and "warning below 20" in text
    assert "127.0.0.1" in text  # whose: the IP Docker Hub names in docker-ratelimit-source
    assert "6-hour window (w=21600)" in text and "<!date^" in text  # the window, when it is full
    assert "kubectl create secret docker-registry dockerhub-creds" in text
    assert "kubectl patch serviceaccount default" in text
    assert "/etc/containerd/certs.d/docker.io/hosts.toml" in text  # the mirror
    ts = slack.messages(CHANNEL)[0].ts

    hub.remaining = 20  # at the threshold: recovered
    for _ in range(3):
        b.run()
        a.run()
    [_, recovery] = posts(slack)
    assert recovery.params["thread_ts"] == ts
    assert "recovered: 20 of 100 pulls left" in text_of(recovery)
    # HEAD only: the watch itself never used a pull
    assert not [r for r in hub.requests if r.method == "GET" and "/manifests/" in r.path]


def test_a_dip_within_the_window_of_the_last_warning_says_nothing(
        hub: DockerHubStub, slack: SlackStandIn, replicas: tuple[Store, Store],
        kube: KubeClient) -> None:
    a, b = (watch(store, slack, hub, kube) for store in replicas)
    for remaining in (5, 50, 3, 40, 2):
        hub.remaining = remaining
        a.run()
        b.run()
    assert len(posts(slack)) == 2  # the first warning and its recovery; the dips: quiet
    hub.remaining = 60
    a.run()
    assert len(posts(slack)) == 2


def test_a_429_counts_as_nothing_left(hub: DockerHubStub, slack: SlackStandIn,
                                      replicas: tuple[Store, Store], kube: KubeClient) -> None:
    hub.rate_limited = True
    watch(replicas[0], slack, hub, kube).run()
    [warning] = posts(slack)
    assert "0 of 100 pulls left" in text_of(warning)
    assert "refusing pulls now (429 toomanyrequests)" in text_of(warning)


def test_an_unreadable_quota_is_logged_once_and_never_posted(
        hub: DockerHubStub, slack: SlackStandIn, replicas: tuple[Store, Store],
        kube: KubeClient, caplog: pytest.LogCaptureFixture) -> None:
    quota = watch(replicas[0], slack, hub, kube,
                  auth_url=f"http://127.0.0.1:{closed_port()}/token")
    with caplog.at_level(logging.WARNING, logger="bot.routines.quota"):
        for _ in range(3):
            quota.run()
    assert posts(slack) == []
    assert [r.getMessage() for r in caplog.records].count(
        "quota watch: cannot read the Docker Hub quota of anonymous: token service "
        "unreachable: connection refused") == 1, caplog.text


def test_one_check_per_docker_hub_account_in_use_and_no_password_anywhere(
        hub: DockerHubStub, slack: SlackStandIn, replicas: tuple[Store, Store],
        sim: SimCluster, kube: KubeClient) -> None:
    for obj in (
        # one account in two secrets (two spellings of Docker Hub), both in use
        pull_secret("hub-a", "shop", "https://index.docker.io/v1/", HUB_USER, HUB_PASSWORD),
        pull_secret("hub-b", "shop", "docker.io", HUB_USER, HUB_PASSWORD),
        account("default", "shop", "hub-a"),
        account("builder", "shop", "hub-b", "internal"),
        # in use, but not Docker Hub; Docker Hub, but not in use
        pull_secret("internal", "shop", "registry.internal:5000", "deploy", "x-not-hub"),
        pull_secret("hub-unused", "shop", "docker.io", OTHER_USER, OTHER_PASSWORD),
    ):
        sim.apply(obj)
    facts = WatchedFacts(kube, idle_timeout=0.5)
    facts.start()
    try:
        assert facts.wait_synced(5)
        a, b = (watch(store, slack, hub, kube, facts=facts) for store in replicas)
        owners = a.owners()
        assert [(o.credentials.username if o.credentials else None, o.secrets)
                for o in owners] == [(None, ()), (HUB_USER, ("shop/hub-a", "shop/hub-b"))]

        hub.clear_requests()
        sim.clear_requests()
        a.run()
        logins = [r for r in hub.requests if r.path == "/token" and r.auth_user]
        assert [r.auth_user for r in logins] == [HUB_USER]  # one check for the account
        # after the first look, one GET a tick per account (its first secret), not per secret
        assert [r.path for r in sim.requests_matching("GET", "/secrets/")] == [
            "/api/v1/namespaces/shop/secrets/hub-a"]

        hub.remaining = 4  # the stand-in counts both quotas down together
        a.run()
        b.run()
        warnings = posts(slack)
        assert len(warnings) == 2  # the IP's and the account's, once each
        account_warning = next(c for c in warnings if HUB_USER in text_of(c))
        text = text_of(account_warning)
        assert "4 of 200 pulls left" in text
        assert "shop/hub-a" in text and "shop/hub-b" in text
        assert hub.account_id in text  # docker-ratelimit-source of an account
        assert "kubectl create secret" not in text  # it is authenticated already
        # a secret re-created for the other account: seen by its new version, checked too
        updated = pull_secret("hub-b", "shop", "docker.io", OTHER_USER, OTHER_PASSWORD)
        # the update time the apiserver records in managedFields (the scenario cluster keeps
        # what it is given): the secret's version as the fact watch reports it
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        updated["metadata"]["managedFields"] = [
            {"manager": "kubectl-create", "operation": "Update", "time": later}]
        sim.apply(updated)
        wait_for(lambda: [o.secrets for o in a.owners()] == [(), ("shop/hub-a",),
                                                            ("shop/hub-b",)], 5,
                 "the account of the re-created secret")
        for call in slack.calls:
            assert HUB_PASSWORD not in json.dumps(call.params)
            assert OTHER_PASSWORD not in json.dumps(call.params)
        assert OTHER_USER not in json.dumps([c.params for c in slack.calls])
        assert "x-not-hub" not in json.dumps([c.params for c in slack.calls])
    finally:
        facts.stop()
