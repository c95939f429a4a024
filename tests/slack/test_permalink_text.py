"""`permalink` (bot/slack/text.py): a live link only for a Slack permalink on Slack's own host;
anything else (a disguised link, a mention, markup) is shown as inert code."""

from __future__ import annotations

import pytest

from bot.slack.text import permalink


def test_a_slack_permalink_is_a_live_link_with_an_escaped_label() -> None:
    url = "https://acme.slack.com/archives/C0ALERTS01/p1700000000000100?thread_ts=1.2&cid=C1"
    assert permalink(url, "thread <b>") == (
        "<https://acme.slack.com/archives/C0ALERTS01/p1700000000000100?thread_ts=1.2&amp;cid=C1"
        "|thread &lt;b&gt;>")
    assert permalink("https://acme.enterprise.slack-gov.com/archives/C1/p1", "t").startswith(
        "<https://acme.enterprise.slack-gov.com/")


@pytest.mark.parametrize("url", [
    "https://evil.example/archives/C1/p1",
    "https://slack.com.evil.example/x",
    "https://acme.slack.com/archives/C1/p1|Re-authenticate",
    "https://acme.slack.com/x><!channel>",
    "javascript:alert(1)",
])
def test_anything_else_is_inert_code(url: str) -> None:
    shown = permalink(url, "thread")
    assert shown.startswith("`") and shown.endswith("`")
    assert "<" not in shown  # no link, mention or markup can open inside a code span
