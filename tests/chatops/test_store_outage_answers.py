"""With the store down (or refusing writes), every Slack interaction answers the person in words
and nothing is half-done.

The bot runs as `serve` runs it (tests/support/slack_requests.running_bot) on a private
redis-server that the test stops, or whose writes it refuses (`maxmemory 1`: Redis answers OOM
to every write and still serves reads - the "some writes fail" case). Requests are signed as
Slack signs them; PATCHes are counted at the scenario cluster.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.sim import factory
from bot.store import RedisStore
from handlers.guard import SLACK_REFUSED, STORE_UNREACHABLE
from tests.support.private_redis import PrivateRedis
from tests.support.slack_requests import (
    ALERTS,
    BOT_USER_ID,
    BotUnderTest,
    app_mention_event,
    block_action,
    button_value,
    message_ts,
    running_bot,
    slash_command,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(120)]

ALICE = "U0ALICE001"
CAROL = "U0CAROL001"  # an approver
IMAGE = "registry.internal/shop/web:v2.2"
ACK_DEADLINE = 3.0
#: Loggers of the request path: none of them may log a traceback or an error for an outage.
REQUEST_PATH = ("slack_bolt", "handlers", "bot.server", "bot.slack.inbound",
                "bot.chatops.approvals", "bot.chatops.interactive", "waitress")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bot(private_redis: PrivateRedis) -> Iterator[BotUnderTest]:
    store = RedisStore(private_redis.url, prefix=f"outage-{uuid.uuid4().hex[:8]}")
    with running_bot(store=store, env={"APPROVERS": CAROL}) as running:
        yield running


def assert_request_path_quiet(caplog: pytest.LogCaptureFixture) -> None:
    bad = [f"{r.name}: {r.getMessage()[:120]}" for r in caplog.records
           if r.name.startswith(REQUEST_PATH) and (r.exc_info or r.levelno >= logging.ERROR)]
    assert bad == [], bad


def command(bot: BotUnderTest, text: str, user: str = ALICE) -> tuple[Any, str]:
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = bot.client.form(slash_command(text, user_id=user,
                                          response_url=bot.slack.response_url(name)))
    return reply, name


def click(bot: BotUnderTest, action_id: str, value: str, message: Any,
          user: str = ALICE) -> tuple[Any, str]:
    name = f"click-{uuid.uuid4().hex[:6]}"
    payload = {"ts": message.ts, "type": "message", "text": message.text,
               "blocks": message.blocks}
    reply = bot.client.form(block_action(action_id, value, message=payload, user_id=user,
                                         response_url=bot.slack.response_url(name)))
    return reply, name


def answer_text(bot: BotUnderTest, name: str, timeout: float = 20.0) -> str:
    posts = wait_for(lambda: bot.slack.responses(name), timeout, f"the answer to {name}")
    return str(posts[0].body["text"])


def approval_messages(bot: BotUnderTest) -> list[Any]:
    return [m for root in bot.slack.channel_history(ALERTS[0]) for m in [root, *root.replies]
            if "Approval needed" in m.text]


def failing_web(bot: BotUnderTest) -> Any:
    """The failing Deployment, its alert, and one pending approval request (Redis up)."""
    for obj in factory.failing_deployment("shop", "web", IMAGE,
                                          factory.containerd_error("not_found", IMAGE)):
        bot.sim.apply(obj)
    alert = wait_for(lambda: bot.slack.channel_history(ALERTS[0]), 20, "the alert")[0]
    _reply, name = command(bot, "restart shop/deployment/web")
    assert "Asked for approval" in answer_text(bot, name)
    [request] = wait_for(lambda: approval_messages(bot), 10, "the approval request")
    return alert, request


def test_redis_down_every_interaction_answers_and_changes_nothing(
        bot: BotUnderTest, private_redis: PrivateRedis,
        caplog: pytest.LogCaptureFixture) -> None:
    alert, request = failing_web(bot)
    incident_id = button_value(alert, "ipb_rollout_restart")
    request_id = button_value(request, "ipb_approve")
    private_redis.stop()

    reply, name = command(bot, "restart shop/deployment/web")
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, reply
    assert answer_text(bot, name) == STORE_UNREACHABLE

    for action_id, value, user in (("ipb_approve", request_id, CAROL),
                                   ("ipb_deny", request_id, CAROL),
                                   ("ipb_rollout_restart", incident_id, ALICE),
                                   ("ipb_set_image", incident_id, ALICE),
                                   ("ipb_verify_secret", incident_id, ALICE),
                                   ("ipb_check_quota", incident_id, ALICE)):
        reply, name = click(bot, action_id, value, request if "approve" in action_id
                            or "deny" in action_id else alert, user=user)
        assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, (action_id, reply)
        assert answer_text(bot, name) == STORE_UNREACHABLE, action_id

    ts = message_ts()
    mention = bot.client.event(app_mention_event(f"<@{BOT_USER_ID}> status?", ts=ts))
    assert mention.status == 200, mention
    [said] = wait_for(lambda: [c for c in bot.slack.calls_to("chat.postMessage")
                               if c.params.get("thread_ts") == ts], 20, "the mention's answer")
    assert said.params["text"] == STORE_UNREACHABLE

    assert bot.sim.requests_matching("PATCH") == []
    assert len(approval_messages(bot)) == 1  # nothing new was posted for approval
    assert_request_path_quiet(caplog)

    private_redis.start()  # back (and empty: no persistence), so the next try simply works
    reply, name = command(bot, "restart shop/deployment/web")
    assert "Asked for approval" in answer_text(bot, name)


def test_refused_writes_leave_nothing_half_done(bot: BotUnderTest, private_redis: PrivateRedis,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Reads work, every write fails (OOM): no approval is posted, Approve does not PATCH, and
    once writes work again the same request is approved exactly once."""
    _alert, request = failing_web(bot)
    request_id = button_value(request, "ipb_approve")
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_set("maxmemory", "1")
    try:
        reply, name = command(bot, "restart shop/deployment/web", user=CAROL)
        assert reply.status == 200
        # reads still work, so the pending request is found and nothing needs writing
        assert "Already waiting for approval" in answer_text(bot, name)
        reply, name = command(bot, "restart shop/statefulset/db", user=CAROL)
        assert answer_text(bot, name) == STORE_UNREACHABLE  # a new request needs writes
        reply, name = click(bot, "ipb_approve", request_id, request, user=CAROL)
        assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, reply
        assert answer_text(bot, name) == STORE_UNREACHABLE
        time.sleep(0.5)
        assert bot.sim.requests_matching("PATCH") == []
        assert len(approval_messages(bot)) == 1
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()

    reply, name = command(bot, "restart shop/deployment/web")
    assert "Already waiting for approval" in answer_text(bot, name)  # the same request
    reply, name = click(bot, "ipb_approve", request_id, request, user=CAROL)
    assert answer_text(bot, name).startswith("Done:")
    reply, name = click(bot, "ipb_approve", request_id, request, user=CAROL)
    assert "Already approved" in answer_text(bot, name)
    assert len(bot.sim.requests_matching("PATCH")) == 1
    assert_request_path_quiet(caplog)


def test_slack_refusing_the_thread_post_is_answered_too(
        bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """The same guard covers a Slack error: the person learns it in words, no traceback."""
    alert, _request = failing_web(bot)
    bot.slack.fail_next("chat.postMessage", status=200, error="channel_not_found")
    reply, name = click(bot, "ipb_verify_secret", button_value(alert, "ipb_rollout_restart"),
                        alert)
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, reply
    assert answer_text(bot, name) == SLACK_REFUSED.format(code="channel_not_found")
    assert_request_path_quiet(caplog)
