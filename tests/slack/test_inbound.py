"""Hostile requests at `/slack/events`: unsigned junk is 401, signed junk is 400, big is 413,
crafted button presses get a polite answer, and none of it leaves a traceback in the log.

The bot runs as `serve` runs it (tests/support/slack_requests.running_bot: env → settings →
runtime → Bolt → the real HTTP server) against the scenario cluster, the Slack stand-in and real
Redis; requests are signed by tests/support/slack_requests.sign, independently of slack_sdk.
Log records of the whole bot (it runs in this process) are checked with caplog.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.sim import factory
from bot.slack.inbound import UNREADABLE_BUTTON
from tests.support.slack_requests import (
    ALERTS,
    APP_ID,
    FORM_TYPE,
    JSON_TYPE,
    SIGNING_SECRET,
    TEAM_ID,
    BotUnderTest,
    block_action,
    running_bot,
    sign,
    slack_json,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.security, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def bot() -> Iterator[BotUnderTest]:
    with running_bot() as running:
        yield running


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [f"{r.name}: {r.getMessage()}" for r in caplog.records
           if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert bad == [], bad


def raw_post(bot: BotUnderTest, body: bytes, headers: dict[str, str]) -> Any:
    return bot.client.request("POST", "/slack/events", body, headers)


# -- defect 2: unsigned or malformed requests ---------------------------------------------------
UNSIGNED = {
    "invalid-json-no-signature": (b"{not json", {"Content-Type": JSON_TYPE}),
    "payload-not-json-no-signature": (b"payload=%7Bnot", {"Content-Type": FORM_TYPE}),
    "non-numeric-timestamp": (b"{}", {"Content-Type": JSON_TYPE,
                                      "X-Slack-Request-Timestamp": "abc",
                                      "X-Slack-Signature": "v0=" + "0" * 64}),
    "float-timestamp": (b"{}", {"Content-Type": JSON_TYPE,
                                "X-Slack-Request-Timestamp": f"{time.time():.3f}",
                                "X-Slack-Signature": "v0=" + "0" * 64}),
    "huge-timestamp": (b"{}", {"Content-Type": JSON_TYPE,
                               "X-Slack-Request-Timestamp": "9" * 400,
                               "X-Slack-Signature": "v0=" + "0" * 64}),
    "not-utf8-no-signature": (b"\xff\xfe{", {"Content-Type": JSON_TYPE}),
}


@pytest.mark.parametrize("case", list(UNSIGNED.values()), ids=list(UNSIGNED))
def test_unsigned_junk_is_401_without_a_traceback(bot: BotUnderTest, case: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    body, headers = case
    reply = raw_post(bot, body, headers)
    assert reply.status == 401, reply
    assert reply.json() == {"error": "invalid request"}
    assert_no_traceback(caplog)


def test_non_numeric_timestamp_with_a_real_signature_is_401(
        bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    body = b'{"type":"url_verification","challenge":"c"}'
    digest = sign(body, SIGNING_SECRET, 0)["X-Slack-Signature"]
    reply = raw_post(bot, body, {"Content-Type": JSON_TYPE, "X-Slack-Signature": digest,
                                 "X-Slack-Request-Timestamp": "0x10"})
    assert reply.status == 401, reply
    assert_no_traceback(caplog)


SIGNED_MALFORMED = {
    "invalid-json": (b"{not json", JSON_TYPE),
    "json-array": (b"[1, 2]", JSON_TYPE),
    "json-string": (b'"hello"', JSON_TYPE),
    "payload-not-json": (b"payload=%7Bnot", FORM_TYPE),
    "payload-json-array": (b"payload=%5B1%5D", FORM_TYPE),
    "wrong-content-type": (b"hello", "text/plain"),
    "no-content-type": (b'{"type":"event_callback"}', ""),
    "not-utf8": (b'{"a":"\xff"}', JSON_TYPE),
}


@pytest.mark.parametrize("case", list(SIGNED_MALFORMED.values()), ids=list(SIGNED_MALFORMED))
def test_signed_but_malformed_is_400_without_a_traceback(
        bot: BotUnderTest, case: Any, caplog: pytest.LogCaptureFixture) -> None:
    body, content_type = case
    headers = {**sign(body, SIGNING_SECRET)}
    if content_type:
        headers["Content-Type"] = content_type
    reply = raw_post(bot, body, headers)
    if case[0] == b'{"a":"\xff"}':  # not UTF-8 cannot be what Slack signed: refused either way
        assert reply.status in (400, 401), reply
    else:
        assert reply.status == 400, reply
        assert reply.json() == {"error": "malformed request"}
    assert_no_traceback(caplog)


def test_body_over_one_mib_is_413(bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """Refused from the Content-Length, before the body is read (so over a raw socket: the
    server may close before a client that insists on sending 1 MiB has finished)."""
    body = b'{"pad":"' + b"x" * (1 << 20) + b'"}'
    head = "".join(f"{k}: {v}\r\n" for k, v in sign(body, SIGNING_SECRET).items())
    with socket.create_connection((bot.client.host, bot.client.port), timeout=5) as sock:
        sock.sendall(f"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: {JSON_TYPE}"
                     f"\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body[:1000])
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"413", status_line
    assert_no_traceback(caplog)


def test_bad_content_length_is_refused_without_a_traceback(
        bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    reply = bot.client.event(b"{}", headers={"Content-Length": "-5"})
    assert reply.status in (400, 411, 413), reply
    assert_no_traceback(caplog)


def test_probes_still_answer_after_the_junk(bot: BotUnderTest) -> None:
    assert bot.client.get("/healthz").status == 200


# -- defect 11: crafted, correctly signed button presses ----------------------------------------
def crafted(bot: BotUnderTest, name: str, **changes: Any) -> bytes:
    """A signed block_actions payload with some fields replaced (None: left out)."""
    payload: dict[str, Any] = {
        "type": "block_actions", "user": {"id": "U0ALICE001", "username": "alice"},
        "api_app_id": APP_ID, "team": {"id": TEAM_ID, "domain": "imagepull-test"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": ALERTS[0]},
        "channel": {"id": ALERTS[0], "name": ALERTS[1]},
        "response_url": bot.slack.response_url(name), "trigger_id": "1.2.abc",
        "actions": [{"action_id": "ipb_approve", "value": f"apr-{uuid.uuid4().hex[:12]}",
                     "type": "button", "block_id": "b", "action_ts": "1.2"}],
    }
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return urlencode({"payload": slack_json(payload)}).encode()


def button(action_id: str, value: Any) -> list[dict[str, Any]]:
    return [{"action_id": action_id, "value": value, "type": "button", "block_id": "b",
             "action_ts": "1.2"}]


CRAFTED: dict[str, dict[str, Any]] = {
    "user-as-string": {"user": "U0ALICE001"},
    "user-as-number": {"user": 7},
    "user-id-as-number": {"user": {"id": 7}},
    "no-user": {"user": None},
    "empty-actions": {"actions": []},
    "actions-not-a-list": {"actions": {"0": {}}},
    "action-not-an-object": {"actions": [1]},
    "action-without-action-id": {"actions": [{"value": "x"}]},
    "value-as-number": {"actions": button("ipb_approve", 12)},
    "value-names-the-decision-key": {"actions": button("ipb_approve", "apr-x:decision")},
    "value-not-a-request-id": {"actions": button("ipb_deny", "../../etc")},
    "incident-value-names-another-key": {
        "actions": button("ipb_rollout_restart", "inc-0123456789ab:announced")},
    "incident-value-wrong-format": {"actions": button("ipb_check_quota", "incidents:active")},
    "team-as-number": {"team": 1},
    "channel-as-number": {"channel": 1},
}


@pytest.mark.parametrize("changes", list(CRAFTED.values()), ids=list(CRAFTED))
def test_crafted_button_press_gets_a_polite_answer(bot: BotUnderTest, changes: dict[str, Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    name = f"crafted-{uuid.uuid4().hex[:6]}"
    before = len(bot.sim.requests_matching("PATCH"))
    reply = bot.client.form(crafted(bot, name, **changes))
    assert reply.status == 200, reply  # acked at once, not a 404 after 3 s
    assert reply.elapsed < 1.5, reply.elapsed
    [answer] = wait_for(lambda: bot.slack.responses(name), 5, "the polite answer")
    assert answer.body["text"] == UNREADABLE_BUTTON
    assert answer.body.get("response_type") == "ephemeral"
    assert len(bot.sim.requests_matching("PATCH")) == before
    assert_no_traceback(caplog)


def test_value_naming_a_key_of_another_type_never_reaches_redis(
        bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """A real incident's `announced` set and a string at `approval:<x>`: with a button value
    built to name them, the bot must not read them as a hash (WRONGTYPE)."""
    image = "registry.internal/shop/cart:v9"
    for obj in factory.failing_deployment("shop", "cart", image,
                                          factory.containerd_error("not_found", image)):
        bot.sim.apply(obj)
    alert = wait_for(lambda: bot.slack.channel_history(ALERTS[0]), 20, "the alert")[0]
    incident_id = next(str(e["value"]) for b in alert.blocks for e in b.get("elements", [])
                       if e.get("action_id") == "ipb_rollout_restart")
    bot.store.put(bot.store.key("approval", "apr-x:decision"), "1")
    message = {"ts": alert.ts, "type": "message", "text": alert.text, "blocks": alert.blocks}
    for action_id, value in (("ipb_rollout_restart", f"{incident_id}:announced"),
                             ("ipb_approve", "apr-x:decision")):
        name = f"wrongtype-{uuid.uuid4().hex[:6]}"
        reply = bot.client.form(block_action(action_id, value, message=message,
                                             response_url=bot.slack.response_url(name)))
        assert reply.status == 200 and reply.elapsed < 1.5, reply
        [answer] = wait_for(lambda n=name: bot.slack.responses(n), 5, "the polite answer")
        assert answer.body["text"] == UNREADABLE_BUTTON
    # the control: the same button with the id the bot made works
    name = f"genuine-{uuid.uuid4().hex[:6]}"
    bot.client.form(block_action("ipb_rollout_restart", incident_id, message=message,
                                 response_url=bot.slack.response_url(name)))
    [answer] = wait_for(lambda: bot.slack.responses(name), 10, "the genuine answer")
    assert "Asked for approval" in answer.body["text"], answer.body
    assert_no_traceback(caplog)


def test_malformed_button_press_without_response_url_is_400(
        bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps({"type": "block_actions", "user": "x", "actions": []}).encode()
    reply = bot.client.event(body)
    assert reply.status == 400, reply  # nobody to answer politely: a plain refusal
    assert_no_traceback(caplog)


def test_every_listener_is_guarded(bot: BotUnderTest) -> None:
    """A listener that raises after ack() makes Bolt answer 404 after 3 s (handlers/guard.py):
    every listener the bot registers goes through answers_failures."""
    from handlers.guard import GUARD_MARK

    listeners = list(bot.bolt._listeners)
    assert len(listeners) >= 7  # /imagepull, app_mention, four alert buttons, approve, deny
    unguarded = [getattr(item, "ack_function", item) for item in listeners
                 if not getattr(getattr(item, "ack_function", None), GUARD_MARK, False)]
    assert unguarded == []
