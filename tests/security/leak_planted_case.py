"""Not collected on its own (no test_ prefix): test_leak_scanner.py runs it in a child pytest
session to prove that a leaked test secret fails the whole session."""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from bot.sim.slack import SlackStandIn
from tests.support.registry import DEPLOY_PASSWORD
from tests.support.stubs import HUB_PASSWORD


def test_leaks_one_secret_to_a_log_and_one_to_slack() -> None:
    try:
        raise RuntimeError(f"registry said no to {DEPLOY_PASSWORD}")
    except RuntimeError:
        logging.getLogger("bot.planted").warning("pull failed", exc_info=True)
    with SlackStandIn() as slack:
        WebClient(token=slack.token, base_url=slack.api_url).chat_postMessage(
            channel="#imagepull-alerts", text=f"creds: {HUB_PASSWORD}")
