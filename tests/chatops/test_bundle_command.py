"""`/imagepull bundle NS/POD` and the alert's Bundle button, through the bot's real HTTP
endpoint, signed as Slack signs (tests/support/slack_requests.py), against the scenario
cluster with the image-rewritten scenario loaded (a registry mirror's mutating webhook)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot.sim import load_scenario
from bot.slack import actions
from tests.chatops.test_interactive import (
    ACK_DEADLINE,
    answer,
    button_value,
    click,
    command,
)
from tests.support.leaks import SECRETS
from tests.support.slack_requests import ALERTS, BotUnderTest, running_bot
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

POD = "shop/web-7d9f8b6c5d-x2x9q"
PASSWORD = "m1rror-pull-pass-do-not-print"
MIRROR = "image-mirror/rewrite.mirror.corp.example"


@pytest.fixture
def bot() -> Iterator[BotUnderTest]:
    with running_bot() as running:
        for obj in load_scenario("image-rewritten").objects:
            running.sim.apply(obj)
        yield running


def test_bundle_command_acks_at_once_then_answers_with_the_bundle(bot: BotUnderTest) -> None:
    assert PASSWORD in SECRETS  # the session's leak scan checks every Slack call for it
    bot.sim.set_latency(r"/pods/", 4.0)  # a slow API server: the ack must not wait for it
    reply, name = command(bot, f"bundle {POD}")
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, reply.elapsed
    assert "working on it" in reply.text
    body = answer(bot, name, timeout=30)
    blocks = json.dumps(body["blocks"], ensure_ascii=False)
    assert f"`{MIRROR}` — mutating, failurePolicy `Ignore`" in blocks
    assert "rewritten at admission" in blocks
    assert "`shop-puller` on `registry.internal`" in blocks
    assert "sudo crictl pull mirror.corp.example/shop/web:2.1" in blocks
    assert PASSWORD not in blocks
    assert body["response_type"] == "ephemeral"


def test_help_lists_bundle(bot: BotUnderTest) -> None:
    reply, _ = command(bot, "help")
    assert "/imagepull bundle NAMESPACE/POD" in reply.text


def test_every_alert_has_a_bundle_button_that_answers_in_the_thread(bot: BotUnderTest) -> None:
    def alert() -> Any:
        history = bot.slack.channel_history(ALERTS[0])
        return history[0] if history else None

    root = wait_for(alert, what="the alert")
    reply, name = click(bot, actions.BUNDLE, button_value(root, actions.BUNDLE), root)
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE
    assert "Posted in the alert's thread" in answer(bot, name)["text"]

    def bundle_reply() -> Any:
        replies = bot.slack.channel_history(ALERTS[0])[0].replies
        return next((r for r in replies if "Escalation bundle" in r.text), None)

    posted = wait_for(bundle_reply, what="the bundle in the thread")
    assert MIRROR in json.dumps(posted.blocks)
    assert PASSWORD not in json.dumps(posted.blocks)
