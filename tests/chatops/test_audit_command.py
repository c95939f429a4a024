"""`/imagepull audit [NAMESPACE]` through the real Bolt app, signed as Slack signs.

The bot runs as `serve` runs it against the scenario cluster (loaded with the audit's
scenarios, tests/data/audit), the Slack stand-in and real Redis: the ack comes within Slack's
3 seconds, and the audit arrives through the response_url.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sim import load_scenario
from bot.slack.text import BACKTICK_LOOKALIKE
from tests.support.slack_requests import BotUnderTest, running_bot, slash_command
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DATA = Path(__file__).parents[1] / "data" / "audit"
ACK_DEADLINE = 3.0


@pytest.fixture
def bot() -> Iterator[BotUnderTest]:
    with running_bot() as running:
        yield running


def command(bot: BotUnderTest, text: str) -> tuple[Any, dict[str, Any]]:
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = bot.client.form(slash_command(text, response_url=bot.slack.response_url(name)))
    posts = wait_for(lambda: bot.slack.responses(name), 30, f"the answer to {name}")
    return reply, dict(posts[0].body)


def test_audit_acks_at_once_then_posts_the_findings(bot: BotUnderTest) -> None:
    bot.sim.load(load_scenario(DATA / "credentials.yaml"))
    bot.sim.set_latency(r"/deployments", 4.0)  # a slow API: the ack must not wait for it
    reply, body = command(bot, "audit shop")
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, reply.elapsed
    assert "working on it" in reply.text
    blocks = json.dumps(body["blocks"])
    assert body["response_type"] == "ephemeral"
    assert "5 findings" in body["text"]
    for check in ("ecr_token_expired", "pull_secret_missing", "pull_secret_unused",
                  "pull_secret_registry_unused", "cloud_registry_static_secret"):
        assert check in blocks
    assert "kubectl create secret docker-registry gone" in blocks  # the first fix of each
    assert len(body["blocks"]) <= 50


def test_audit_of_a_clean_namespace_says_so(bot: BotUnderTest) -> None:
    bot.sim.load(load_scenario(DATA / "clean.yaml"))
    reply, body = command(bot, "audit tools")
    assert reply.status == 200
    assert "no findings (1 namespaces, 1 workloads checked)" in body["text"]


def test_unknown_namespace_and_bad_input(bot: BotUnderTest) -> None:
    _, body = command(bot, "audit nope")
    assert 'namespace "nope" not found' in body["text"]
    reply = bot.client.form(slash_command("audit Not_A_Namespace",
                                          response_url=bot.slack.response_url("bad")))
    assert reply.status == 200 and "DNS-1123" in reply.text
    time.sleep(0.3)
    assert bot.slack.responses("bad") == []


def test_hostile_names_come_out_escaped(bot: BotUnderTest) -> None:
    """A workload called `$(rm -rf /)` and an image carrying backticks and `<!channel>`: Slack
    shows them as text (no ping, no broken code span), and no command runs them."""
    bot.sim.load(load_scenario(DATA / "hostile.yaml"))
    _, body = command(bot, "audit")
    everything = body["text"] + json.dumps(body["blocks"], ensure_ascii=False)
    assert "<!channel>" not in everything
    assert "&lt;!channel&gt;" in everything
    lookalike = BACKTICK_LOOKALIKE
    assert "`reboot`" not in everything and f"{lookalike}reboot{lookalike}" in everything
    assert "$(rm -rf /)" in everything  # shown, as a name
    assert "kubectl set image 'deployment/&lt;workload-name&gt;'" in everything  # not run


def test_a_namespace_outside_watch_namespaces_is_refused() -> None:
    with running_bot(env={"WATCH_NAMESPACES": "tools"}) as bot:
        bot.sim.load(load_scenario(DATA / "clean.yaml"))
        _, refused = command(bot, "audit shop")
        _, watched = command(bot, "audit")
    assert "is not one of the namespaces this bot watches" in refused["text"]
    assert "no findings (1 namespaces, 1 workloads checked)" in watched["text"]
