"""Where a button press says its message is (bot/slack/inbound.py `BlockActions.thread`): the
alert buttons answer in that thread when the incident has not recorded it yet."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from bot.slack.inbound import read_block_actions
from tests.support.slack_requests import ALERTS, block_action

ROOT = {"ts": "1700000000.000100", "text": "alert", "blocks": [{"type": "actions", "elements": [
    {"type": "button", "action_id": "ipb_verify_secret", "value": "x",
     "text": {"type": "plain_text", "text": "Verify"}}]}]}


def press(message: dict[str, Any], **more: Any) -> Any:
    body = block_action("ipb_verify_secret", "x", message=message, response_url="http://x/",
                        **more)
    return read_block_actions(json.loads(parse_qs(body.decode())["payload"][0]))


def test_a_root_message_is_its_own_thread() -> None:
    assert press(ROOT).thread == (ALERTS[0], ROOT["ts"])


@pytest.mark.parametrize("where", ["message", "container"])
def test_a_reply_answers_in_the_thread_it_is_in(where: str) -> None:
    reply = {**ROOT, "ts": "1700000000.000200"}
    if where == "message":
        assert press({**reply, "thread_ts": ROOT["ts"]}).thread == (ALERTS[0], ROOT["ts"])
    else:
        container = {"type": "message", "message_ts": reply["ts"], "channel_id": ALERTS[0],
                     "thread_ts": ROOT["ts"], "is_ephemeral": False}
        assert press(reply, container=container).thread == (ALERTS[0], ROOT["ts"])


def test_an_ephemeral_message_or_a_view_has_no_thread() -> None:
    assert press(ROOT, is_ephemeral=True).thread is None
    assert press(ROOT, container={"type": "view", "view_id": "V1"}).thread is None
