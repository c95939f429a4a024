"""Issue 12, Deliver 1's remaining case: a Docker Hub 429 (rate_limited) incident whose quota
comes back. The thread says so in the same "cause is fixed" line as the other fixes: whose
quota (an account's, exactly; the bot's own IP's only with its caveat, and only after it was
seen spent with the nodes'), the kubelet's own next retry, and Retry now.

The whole bot as `serve` runs it (tests/support/slack_requests.running_bot: the scenario
cluster, real Redis, the Slack stand-in) against the Docker Hub stand-in
(tests/support/stubs.DockerHubStub: `rate_limited`, then `remaining`, set by the test), plus a
second replica on the same Redis. Nothing of the bot is replaced or patched.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bot.sim import factory
from bot.slack import actions
from tests.app.test_retry_now import buttons, fixed_lines, second_replica, thread
from tests.support.slack_requests import BotUnderTest, running_bot
from tests.support.stubs import HUB_PASSWORD, HUB_USER, DockerHubStub
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IMAGE = "docker.io/library/nginx:1.27"
QUOTA_CHECK = "/v2/ratelimitpreview/test/manifests/latest"


def hub_creds() -> dict[str, Any]:
    """A pull secret with a Docker Hub account (the spelling `docker login` writes)."""
    auth = base64.b64encode(f"{HUB_USER}:{HUB_PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}}).encode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "dockerhub-creds", "namespace": "shop"},
            "data": {".dockerconfigjson": base64.b64encode(config).decode()}}


def rate_limited_web(bot: BotUnderTest, *, pull_secrets: tuple[str, ...] = (),
                     replicas: int = 2) -> str:
    """shop/web's pods get Docker Hub's 429; returns the incident's id."""
    for obj in factory.failing_deployment("shop", "web", IMAGE,
                                          factory.containerd_error("rate_limited", IMAGE),
                                          pull_secrets=list(pull_secrets), replicas=replicas):
        bot.sim.apply(obj)
    [incident_id] = wait_for(lambda: bot.runtime.manager.active_ids(), 20, "the incident")
    wait_for(lambda: (i := bot.runtime.manager.load(incident_id)) is not None
             and i.state == "open" and len(i.members) == replicas, 20, "the alert")
    opened = bot.runtime.manager.load(incident_id)
    assert opened is not None and opened.cause.value == "rate_limited", opened
    return incident_id


def asked(bot: BotUnderTest, incident_id: str) -> int:
    """How many times the cause watch asked about the incident (its `reprobe` count)."""
    head = bot.runtime.manager.head(incident_id, "reprobe") or {}
    return int((head.get("reprobe") or "0 0").split()[0])


def quota_checks(hub: DockerHubStub) -> list[Any]:
    return [r for r in hub.requests if r.path == QUOTA_CHECK]


def env(hub: DockerHubStub, name: str, **more: str) -> dict[str, str]:
    return {"DOCKERHUB_AUTH_URL": hub.realm, "DOCKERHUB_REGISTRY_URL": hub.url,
            "SWEEP_INTERVAL_SECONDS": "1", "APPROVERS": "U0CAROL001",
            "CLUSTER_NAME": f"{name}-{uuid.uuid4().hex[:6]}", **more}


@pytest.fixture
def hub() -> Iterator[DockerHubStub]:
    with DockerHubStub(users={HUB_USER: HUB_PASSWORD}, rate_limited=True) as stub:
        yield stub


def test_an_accounts_quota_coming_back_is_said_once_with_retry_now(hub: DockerHubStub) -> None:
    with running_bot(env=env(hub, "quota-acct")) as bot:
        replica = second_replica(bot)
        try:
            bot.sim.apply(hub_creds())
            incident_id = rate_limited_web(bot, pull_secrets=("dockerhub-creds",))
            # the first question (10 s after the incident opened): still rate-limited
            wait_for(lambda: asked(bot, incident_id) >= 1, 20, "the first quota check")
            assert fixed_lines(bot) == []
            checks = quota_checks(hub)
            assert checks and all(r.method == "HEAD" for r in checks), checks  # no pull used
            assert {r.auth_user for r in hub.requests if r.path == "/token"} >= {HUB_USER}

            hub.rate_limited, hub.remaining = False, 87  # the six-hour window reset
            [line] = wait_for(lambda: fixed_lines(bot), 40, "the line saying the quota is back")
            assert ("Docker Hub quota for account `hubuser` is back: 87 of 200 left"
                    in line.text), line.text
            assert "The kubelet retries on its own at" in line.text
            # the registry's incident, but its pods are one workload's: Retry now restarts it
            assert "*Retry now* restarts `deployment/web`" in line.text
            assert buttons(line) == {actions.RETRY: incident_id}
            incident = bot.runtime.manager.load(incident_id)
            assert incident is not None and incident.cleared is not None
            assert incident.cleared.kubelet_retry_at is not None
            [figure] = incident.cleared.change.quotas
            assert (figure.account, figure.remaining, figure.limit, figure.pods) == (
                HUB_USER, 87, 200, 2)
            # only the account's quota was asked: the pods do not pull anonymously
            tokens = [r for r in hub.requests if r.path == "/token"]
            assert all(r.auth_user == HUB_USER for r in tokens), tokens
            time.sleep(2)  # both replicas tick the incident again: still one line
            assert len(fixed_lines(bot)) == 1
            texts = [r.text for r in thread(bot)]
            assert not any(HUB_PASSWORD in t for t in texts)
            print(f"\nthread: {line.text}")
        finally:
            replica.stop()


def test_read_only_has_no_button(hub: DockerHubStub) -> None:
    with running_bot(env=env(hub, "quota-ro", REMEDIATION_ENABLED="false")) as bot:
        bot.sim.apply(hub_creds())
        incident_id = rate_limited_web(bot, pull_secrets=("dockerhub-creds",), replicas=1)
        hub.rate_limited, hub.remaining = False, 87
        [line] = wait_for(lambda: fixed_lines(bot), 30, "the line saying the quota is back")
        assert "Docker Hub quota for account `hubuser` is back" in line.text
        assert buttons(line) == {}
        assert "kubectl rollout restart deployment/web -n shop" in line.text, line.text
        assert bot.sim.requests_matching("PATCH") == []
        assert asked(bot, incident_id) >= 1


def test_a_quota_with_fewer_pulls_than_pods_is_not_back(hub: DockerHubStub) -> None:
    """One pull left and two pods to pull: a retry would be spent half-way, so not yet."""
    with running_bot(env=env(hub, "quota-few")) as bot:
        bot.sim.apply(hub_creds())
        incident_id = rate_limited_web(bot, pull_secrets=("dockerhub-creds",))
        hub.rate_limited, hub.remaining = False, 1
        wait_for(lambda: asked(bot, incident_id) >= 1, 20, "the first quota check")
        time.sleep(1.5)
        assert fixed_lines(bot) == []


def test_anonymous_pulls_are_said_with_the_nat_caveat_after_the_ip_was_seen_spent(
        hub: DockerHubStub) -> None:
    with running_bot(env=env(hub, "quota-anon")) as bot:
        incident_id = rate_limited_web(bot, replicas=1)
        wait_for(lambda: asked(bot, incident_id) >= 1, 20, "the first quota check")
        assert fixed_lines(bot) == []
        head = bot.runtime.manager.head(incident_id, "quota_low") or {}
        assert head.get("quota_low") == "1"  # the bot's IP ran out with the nodes'
        hub.rate_limited, hub.remaining = False, 87
        [line] = wait_for(lambda: fixed_lines(bot), 40, "the line saying the IP has pulls")
        assert ("the bot's own outbound IP has Docker Hub pulls again (87 of 100 left); your "
                "nodes share it only if they leave through the same NAT" in line.text), line.text
        tokens = [r for r in hub.requests if r.path == "/token"]
        assert tokens and all(r.auth_user is None for r in tokens), tokens


def test_an_ip_that_never_ran_out_says_nothing_of_the_nodes() -> None:
    """The nodes got 429s while the bot's own IP had pulls left: they do not leave through the
    bot's NAT, so its figure is not theirs, and no line is posted."""
    with DockerHubStub(remaining=90) as hub, running_bot(env=env(hub, "quota-ip")) as bot:
        incident_id = rate_limited_web(bot, replicas=1)
        wait_for(lambda: asked(bot, incident_id) >= 1, 20, "the first quota check")
        time.sleep(1.5)
        assert quota_checks(hub)
        assert fixed_lines(bot) == []
        head = bot.runtime.manager.head(incident_id, "quota_low") or {}
        assert head.get("quota_low") is None

