"""What the bot's public HTTP endpoint does with genuine, forged, stale and replayed requests.

The bot runs as `python -m bot serve` runs it (env → settings → runtime → Bolt → WSGI server on a
free port) against the scenario cluster, the Slack stand-in and real Redis. Requests are built
and signed by tests/support/slack_requests.py, independently of slack_sdk's verifier.

"No side effect" is checked with a barrier: after the bad request, a genuine mention is sent and
answered; by then the bad one would have been answered too, had it got through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.sim.slack import SlackStandIn
from tests.support.slack_requests import (
    ALERTS,
    BOT_USER_ID,
    DOC_EXAMPLE,
    MAX_SKEW_SECONDS,
    SIGNING_SECRET,
    BotUnderTest,
    app_mention_event,
    block_action,
    message_ts,
    new_event_id,
    running_bot,
    sign,
    slash_command,
    url_verification,
)
from tests.support.waiting import wait_for as _wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

#: Slack wants the HTTP answer within 3 seconds, or it retries.
ACK_DEADLINE = 3.0


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    return _wait_for(condition, timeout, what)


def answers_to(slack: SlackStandIn, ts: str) -> list[Any]:
    """The bot's replies in the thread of the mention with this ts (health.py answers there)."""
    return [c for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]


def mention(bot: BotUnderTest, **options: Any) -> tuple[str, Any]:
    """Post a fresh app_mention; return its ts and the HTTP reply."""
    ts = message_ts()
    time.sleep(0.001)  # distinct ts for the next mention
    reply = bot.client.event(app_mention_event(f"<@{BOT_USER_ID}> are you there?", ts=ts),
                             **options)
    return ts, reply


def assert_never_answered(bot: BotUnderTest, ts: str) -> None:
    barrier_ts, barrier = mention(bot)
    assert barrier.status == 200, barrier
    wait_for(lambda: answers_to(bot.slack, barrier_ts), what="the barrier mention's answer")
    time.sleep(0.2)
    assert answers_to(bot.slack, ts) == [], "a rejected request reached the listener"


@pytest.fixture(scope="module")
def bot() -> Iterator[BotUnderTest]:
    with running_bot() as running:
        yield running


# -- the signature itself ------------------------------------------------------------------------
def test_sign_reproduces_slacks_worked_example() -> None:
    secret, timestamp, body, signature = DOC_EXAMPLE
    assert sign(body, secret, timestamp) == {
        "X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def test_slash_command_body_is_byte_identical_to_slacks_example() -> None:
    """Same fields, order and percent-encoding as the body Slack signed in its example."""
    _, _, body, _ = DOC_EXAMPLE
    built = slash_command(
        "", token="xyzz0WbapA4vBCDEFasx0q6G", team_id="T1DC2JH3J", team_domain="testteamnow",
        channel_id="G8PSS9T3V", channel_name="foobar", user_id="U2CERLKJA",
        user_name="roadrunner", command="/webhook-collect",
        response_url="https://hooks.slack.com/commands/T1DC2JH3J/397700885554/"
                     "96rGlfmibIGlgcZRskXaIFfN",
        trigger_id="398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
        api_app_id=None, is_enterprise_install=None)
    assert built == body


# -- genuine requests ----------------------------------------------------------------------------
@pytest.mark.parametrize("age", [0, MAX_SKEW_SECONDS - 60], ids=["now", "4-minutes-old"])
def test_signed_app_mention_is_acked_and_answered(bot: BotUnderTest, age: int) -> None:
    ts, reply = mention(bot, timestamp=int(time.time()) - age)
    assert reply.status == 200, reply
    assert reply.elapsed < ACK_DEADLINE, reply.elapsed
    [answer] = wait_for(lambda: answers_to(bot.slack, ts), what="the bot's answer")
    assert answer.ok and answer.params["channel"] == ALERTS[0]
    assert "imagepull-bot watching cluster `test`" in answer.params["text"]


def test_url_verification_challenge_is_echoed(bot: BotUnderTest) -> None:
    reply = bot.client.event(url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7"))
    assert reply.status == 200, reply
    assert reply.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7"}


def test_url_verification_needs_a_signature_too(bot: BotUnderTest) -> None:
    reply = bot.client.event(url_verification("c"), secret="someone-elses-secret")
    assert reply.status == 401, reply
    assert "challenge" not in reply.text


# -- forged, stale, stripped, altered -----------------------------------------------------------
REJECTED: dict[str, dict[str, Any]] = {
    "forged-wrong-secret": {"secret": "not-the-signing-secret"},
    "stale-6-minutes": {"stale": True},
    "from-the-future-6-minutes": {"timestamp": "now+6min"},  # set when the test runs
    "no-signature-headers": {"drop": ["X-Slack-Signature", "X-Slack-Request-Timestamp"]},
    "no-signature": {"drop": ["X-Slack-Signature"]},
    "no-timestamp": {"drop": ["X-Slack-Request-Timestamp"]},
    "signed-another-body": {"signed_body": app_mention_event(f"<@{BOT_USER_ID}> innocent")},
}


@pytest.mark.parametrize("options", list(REJECTED.values()), ids=list(REJECTED))
def test_bad_signature_is_401_and_has_no_effect(bot: BotUnderTest,
                                                options: dict[str, Any]) -> None:
    if options.get("timestamp") == "now+6min":
        options = {**options, "timestamp": int(time.time()) + 6 * 60}
    ts, reply = mention(bot, **options)
    assert reply.status == 401, reply
    assert reply.json() == {"error": "invalid request"}
    assert_never_answered(bot, ts)


def test_unversioned_signature_is_401(bot: BotUnderTest) -> None:
    body = app_mention_event(f"<@{BOT_USER_ID}> hi")
    good = sign(body, SIGNING_SECRET)
    bare = good["X-Slack-Signature"].removeprefix("v0=")
    reply = bot.client.event(body, headers={"X-Slack-Signature": bare})
    assert reply.status == 401, reply


def test_forged_slash_command_is_401_and_never_answered(bot: BotUnderTest) -> None:
    url = bot.slack.response_url("forged-command")
    body = slash_command("help", response_url=url)
    forged = bot.client.form(body, secret="not-the-signing-secret")
    assert forged.status == 401, forged
    genuine = bot.client.form(slash_command("help", response_url=url))
    assert genuine.status == 200, genuine  # the control: same body builder, right secret
    time.sleep(0.2)
    assert bot.slack.responses("forged-command") == []  # `help` answers in the ack only


def test_block_action_signature_is_checked(bot: BotUnderTest) -> None:
    root = {"type": "message", "ts": message_ts(), "text": "alert", "blocks": [
        {"type": "actions", "block_id": "b1", "elements": [
            {"type": "button", "action_id": "ipb_test_nobody_listens", "value": "x",
             "text": {"type": "plain_text", "text": "Press"}}]}]}
    body = block_action("ipb_test_nobody_listens", "x", message=root,
                        response_url=bot.slack.response_url("forged-click"))
    forged = bot.client.form(body, secret="not-the-signing-secret")
    assert forged.status == 401, forged
    genuine = bot.client.form(body)
    # past verification; Bolt answers 404 "unhandled request" for an action nobody listens to
    assert genuine.status == 404, genuine
    assert genuine.json() == {"error": "unhandled request"}


# -- retries -------------------------------------------------------------------------------------
def test_events_api_retry_is_acked_but_not_answered_again(bot: BotUnderTest) -> None:
    """A redelivery (X-Slack-Retry-Num: 1, same event_id) is acked and NOT answered again.
    Bolt's HTTP mode does not dedupe retries (bolt-python#731); handlers/dedupe.py claims each
    event_id in the store."""
    ts = message_ts()
    body = app_mention_event(f"<@{BOT_USER_ID}> hello", ts=ts, event_id=new_event_id())
    first = bot.client.event(body)
    assert first.status == 200, first
    wait_for(lambda: answers_to(bot.slack, ts), what="the first answer")
    retry = bot.client.event(body, retry_num=1, retry_reason="http_timeout")
    assert retry.status == 200, retry  # acked, so Slack stops retrying
    assert retry.elapsed < ACK_DEADLINE
    barrier_ts, _ = mention(bot)
    wait_for(lambda: answers_to(bot.slack, barrier_ts), what="the barrier answer")
    time.sleep(0.2)
    assert len(answers_to(bot.slack, ts)) == 1


# -- probes --------------------------------------------------------------------------------------
def test_healthz_and_unknown_paths(bot: BotUnderTest) -> None:
    health = bot.client.get("/healthz")
    assert (health.status, health.text) == (200, "ok\n")
    assert bot.client.get("/nope").status == 404
    assert bot.client.get("/slack/events").status == 404  # Slack only POSTs
    assert bot.client.get("/readyz").status == 200


def test_readyz_is_503_until_the_runtime_has_started() -> None:
    with running_bot(start=False) as bot:
        assert bot.client.get("/healthz").status == 200  # alive while starting
        starting = bot.client.get("/readyz")
        assert (starting.status, starting.text) == (503, "starting\n")
        bot.start_runtime()
        ready = bot.client.get("/readyz")
        assert (ready.status, ready.text) == (200, "ok\n")
