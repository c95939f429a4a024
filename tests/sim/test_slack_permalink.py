"""chat.getPermalink on the Slack stand-in, called by the real slack_sdk (a query-string GET):
a root's and a reply's links in Slack's shape, `message_not_found` for an unknown ts."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sim.slack import SlackStandIn


def test_permalinks_of_a_root_and_a_reply(slack: SlackStandIn) -> None:
    client = WebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
    root = client.chat_postMessage(channel="imagepull-alerts", text="root")
    reply = client.chat_postMessage(channel=root["channel"], text="reply",
                                    thread_ts=root["ts"])
    cid, ts = root["channel"], root["ts"]
    link = client.chat_getPermalink(channel=cid, message_ts=ts)
    assert link["channel"] == cid
    assert link["permalink"].startswith("https://")
    assert link["permalink"].endswith(f".slack.com/archives/{cid}/p{ts.replace('.', '')}")
    threaded = client.chat_getPermalink(channel=cid, message_ts=reply["ts"])["permalink"]
    assert threaded.endswith(f"p{reply['ts'].replace('.', '')}?thread_ts={ts}&cid={cid}")
    with pytest.raises(SlackApiError) as info:
        client.chat_getPermalink(channel=cid, message_ts="1.000001")
    assert info.value.response["error"] == "message_not_found"
