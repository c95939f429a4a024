"""The daily digest (bot/routines/digest.py) from incidents a real IncidentManager drove through
open → resolved on real Redis, posted through the real slack_sdk to the Slack stand-in: open
incidents with a link to their thread, the period's top causes, time to resolve and noisiest
workloads from the incident history; a quiet period posts nothing."""

from __future__ import annotations

import json

import pytest

from bot.alerts.incidents import RESOLVED_RETENTION
from bot.diagnosis.causes import CAUSES, Cause
from bot.routines import DAY
from bot.routines.digest import Digest
from bot.sim.slack import SlackStandIn
from bot.slack.notifier import web_client
from bot.store import Store
from tests.alerts.test_incidents import CHANNEL, T0, Bot, bad_tag, new_bot, outage

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOUR = 3600.0


def digest(bot: Bot, slack: SlackStandIn, at: float) -> Digest:
    return Digest(bot.manager, web_client(slack.token, slack.api_url), CHANNEL,
                  cluster="prod", period=DAY, clock=lambda: at)


def resolve(bot: Bot, deployment: str, pods: int, at: float) -> None:
    for index in range(pods):
        bot.manager.pod_recovered("shop", f"{deployment}-7d9f8b6c5d-{index:05d}")
    bot.tick(at)


def digests(slack: SlackStandIn) -> list[dict]:
    return [c.params for c in slack.calls_to("chat.postMessage")
            if "Image-pull digest" in json.dumps(c.params)]


def test_the_digest_lists_open_incidents_and_the_days_figures(
        slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    # a Docker Hub outage over three workloads (3, 2 and 1 pods): stays open
    bot.observe(*(outage(name, i) for name, pods in (("svc-a", 3), ("svc-b", 2), ("svc-c", 1))
                  for i in range(pods)))
    # three bad tags, resolved after 10 min, 1 h and 3 h
    bot.observe(bad_tag("web", 0), bad_tag("web", 1), bad_tag("api"), bad_tag("worker"))
    bot.tick(T0 + 11)
    resolve(bot, "web", 2, T0 + 10 * 60)
    resolve(bot, "api", 1, T0 + HOUR)
    resolve(bot, "worker", 1, T0 + 3 * HOUR)
    posted_before = len(slack.calls_to("chat.postMessage"))

    digest(bot, slack, T0 + 5 * HOUR).run()

    assert len(slack.calls_to("chat.postMessage")) == posted_before + 1
    [message] = digests(slack)
    assert message["text"].startswith("📋 Image-pull digest for prod: 1 open, 4 opened and 3 "
                                      "resolved in the last 24 hours")
    body = json.dumps(message["blocks"], ensure_ascii=False)
    rate_limited, bad = CAUSES[Cause.RATE_LIMITED].title, CAUSES[Cause.TAG_NOT_FOUND].title
    # the open incident: cause, scope, age, pods, a permalink to its thread
    root = next(m for m in slack.messages(CHANNEL) if rate_limited in m.text)
    assert f"*{rate_limited}* — `docker.io` — open 5h 00m — 6 pods failing" in body
    assert f"/archives/{root.channel}/p{root.ts.replace('.', '')}|thread>" in body
    assert f"*Top causes:* {bad} (3), {rate_limited} (1)" in body
    assert "*Time to resolve:* median 1h 00m, worst 3h 00m" in body
    assert ("*Noisiest workloads:* `shop/deployment/svc-a` (3 pods), `shop/deployment/svc-b` "
            "(2 pods), `shop/deployment/web` (2 pods), `shop/deployment/api` (1 pod), "
            "`shop/deployment/svc-c` (1 pod)") in body


def test_a_quiet_period_posts_nothing(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    digest(bot, slack, T0).run()  # nothing ever happened
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    resolve(bot, "web", 1, T0 + HOUR)
    digest(bot, slack, T0 + 2 * DAY).run()  # resolved the day before yesterday; none open
    assert digests(slack) == []
    digest(bot, slack, T0 + 2 * HOUR).run()  # the same history, read within its day
    assert len(digests(slack)) == 1


def test_the_history_keeps_a_week_and_each_resolution_once(
        slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    resolve(bot, "web", 1, T0 + HOUR)
    [record] = bot.manager.resolved_since(T0)
    assert (record.cause, record.scope, record.pods, record.workloads) == (
        Cause.TAG_NOT_FOUND, "shop/deployment/web", 1, {"shop/deployment/web": 1})
    assert record.took == HOUR
    bot.observe(bad_tag("api"), at=T0 + RESOLVED_RETENTION + 2 * HOUR)
    bot.tick(T0 + RESOLVED_RETENTION + 2 * HOUR + 11)
    resolve(bot, "api", 1, T0 + RESOLVED_RETENTION + 3 * HOUR)
    assert [r.scope for r in bot.manager.resolved_since(0)] == ["shop/deployment/api"]
