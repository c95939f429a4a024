"""The weekly audit digest and the credentials watch, run as the scheduler runs them (`run()`),
against the scenario cluster, the Slack stand-in (real slack_sdk) and real Redis.

- the digest posts the audit to the alert channel, and nothing when the cluster is clean;
- the credentials watch says each finding once across two runs and two replicas, and a
  finding whose post failed is said at the next run, not the next day;
- `build_runtime` schedules both (AUDIT_CRON, CREDENTIALS_WATCH_SECONDS), and not when off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.app import build_runtime
from bot.config import Settings
from bot.kube.client import KubeClient
from bot.routines.audit import AuditDigest
from bot.routines.credentials import CredentialsWatch
from bot.sim import SimCluster, load_scenario
from bot.sim.slack import SlackStandIn
from bot.slack.notifier import web_client
from tests.support.redis import redis_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DATA = Path(__file__).parents[1] / "data" / "audit"
CHANNEL = "imagepull-alerts"
CREDENTIAL_CHECKS = {"ecr_token_expired", "pull_secret_missing", "pull_secret_unused",
                     "pull_secret_registry_unused"}


def cluster(tmp_path: Path, *scenarios: str) -> tuple[SimCluster, KubeClient]:
    sim = SimCluster([load_scenario(DATA / f"{s}.yaml") for s in scenarios]).start()
    kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
    return sim, kube


def posts(slack: SlackStandIn) -> list[Any]:
    return [c for c in slack.calls_to("chat.postMessage") if c.ok]


def test_the_digest_posts_the_audit_and_nothing_when_clean(
        tmp_path: Path, slack: SlackStandIn) -> None:
    sim, kube = cluster(tmp_path, "credentials")
    try:
        AuditDigest(kube, web_client(slack.token, slack.api_url), CHANNEL).run()
    finally:
        sim.stop()
    [post] = posts(slack)
    assert "Weekly prevention audit" in post.params["text"]
    assert "5 findings" in post.params["text"]
    assert len(post.params["blocks"]) <= 50
    slack.clear()
    sim, kube = cluster(tmp_path, "clean")
    try:
        AuditDigest(kube, web_client(slack.token, slack.api_url), CHANNEL).run()
    finally:
        sim.stop()
    assert posts(slack) == []


def test_each_credential_finding_is_posted_once_across_runs_and_replicas(
        tmp_path: Path, slack: SlackStandIn) -> None:
    sim, kube = cluster(tmp_path, "credentials")
    client = web_client(slack.token, slack.api_url)
    try:
        with redis_store() as a, redis_store(prefix=a.prefix) as b:
            replicas = [CredentialsWatch(kube, client, store, CHANNEL) for store in (a, b)]
            for _ in range(2):
                for replica in replicas:
                    replica.run()
    finally:
        sim.stop()
    texts = [p.params["text"] for p in posts(slack)]
    assert len(texts) == len(CREDENTIAL_CHECKS), texts
    assert {next(c for c in CREDENTIAL_CHECKS if c in t) for t in texts} == CREDENTIAL_CHECKS
    ecr = next(p for p in posts(slack) if "ecr_token_expired" in p.params["text"])
    assert "aws ecr get-login-password --region us-east-1" in str(ecr.params["blocks"])
    assert "CredentialProviderConfig" in str(ecr.params["blocks"])


def test_a_finding_whose_post_failed_is_said_at_the_next_run(
        tmp_path: Path, slack: SlackStandIn) -> None:
    sim, kube = cluster(tmp_path, "credentials")
    client = web_client(slack.token, slack.api_url)
    try:
        with redis_store() as store:
            watch = CredentialsWatch(kube, client, store, CHANNEL)
            slack.fail_next("chat.postMessage", status=200, error="channel_not_found")
            watch.run()
            assert len(posts(slack)) == len(CREDENTIAL_CHECKS) - 1
            watch.run()
    finally:
        sim.stop()
    assert len(posts(slack)) == len(CREDENTIAL_CHECKS)


def test_build_runtime_schedules_both_and_not_when_turned_off(
        tmp_path: Path, slack: SlackStandIn) -> None:
    sim, kube = cluster(tmp_path, "clean")
    base = {"SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.api_url,
            "REGISTRY_PROBE": "false"}
    try:
        with redis_store() as store:
            on = build_runtime(Settings(**base, AUDIT_CRON="0 9 * * 1",
                                        CREDENTIALS_WATCH_SECONDS=3600), kube=kube, store=store)
            off = build_runtime(Settings(**base, AUDIT_CRON="", CREDENTIALS_WATCH_SECONDS=0),
                                kube=kube, store=store)
            with pytest.raises(ValidationError, match="AUDIT_CRON"):
                Settings(**base, AUDIT_CRON="0 9 * * funday")
    finally:
        sim.stop()
    routines = {r.name: r for r in on.routines}
    assert routines["audit-digest"].trigger == "cron"
    assert routines["audit-digest"].trigger_args["day_of_week"] == "mon"  # crontab's 1
    assert routines["audit-digest"].period == 7 * 24 * 3600
    assert routines["credentials-watch"].period == 3600
    assert {"audit-digest", "credentials-watch"}.isdisjoint(r.name for r in off.routines)
