"""The session-wide secret-leak guard (tests/conftest.py) is real: it knows the secrets, it is
installed, and a planted leak fails a session while naming where, never the value."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.sim.slack import SlackStandIn
from tests.support.leaks import (
    SECRETS,
    LeakLogHandler,
    LeakScanner,
    SecretRegistry,
    slack_call_text,
)
from tests.support.registry import DEPLOY_PASSWORD
from tests.support.stubs import HUB_PASSWORD

pytestmark = [pytest.mark.security]

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "planted-Pa55word-7f3a9c"


def test_the_session_guard_knows_the_secrets_and_is_installed() -> None:
    labels = {label for _, label in SECRETS.items()}
    assert DEPLOY_PASSWORD in SECRETS and HUB_PASSWORD in SECRETS
    assert any("scenario" in label for label in labels), labels  # read from the YAML files
    assert any(isinstance(h, LeakLogHandler) for h in logging.getLogger().handlers)
    assert SlackStandIn.observers
    assert logging.getLogger().getEffectiveLevel() <= logging.INFO


def test_a_planted_leak_is_found_in_a_traceback_and_in_a_slack_call() -> None:
    registry = SecretRegistry()
    registry.add(PLANTED, "the planted password")
    scanner = LeakScanner(registry)
    handler = LeakLogHandler(scanner, lambda: "this test")
    logger = logging.getLogger("tests.planted")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"bad credentials {PLANTED}")
        except ValueError:
            logger.error("only the traceback holds it", exc_info=True)
        logger.error("as an argument: %r", {"password": PLANTED})
    finally:
        logger.removeHandler(handler)
    assert len(scanner.findings) == 2, scanner.findings

    observer = lambda call: scanner.scan(slack_call_text(call), call.method)  # noqa: E731
    SlackStandIn.observers.append(observer)
    try:
        with SlackStandIn() as slack:
            client = WebClient(token=slack.token, base_url=slack.api_url)
            client.chat_postMessage(channel="#imagepull-alerts", text=f"x {PLANTED} & <y>",
                                    blocks=[{"type": "section", "text": {
                                        "type": "mrkdwn", "text": "a &amp; b"}}])
    finally:
        SlackStandIn.observers.remove(observer)
    assert scanner.findings[2:] == ["chat.postMessage: contains the planted password"]
    assert all(PLANTED not in f for f in scanner.findings)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_leaking_session_fails_and_says_where_without_the_value(workers: list[str]) -> None:
    """Also under pytest-xdist (as `make test` runs): there the workers scan and the
    controller, which ran no test itself, must still fail the run and name the places."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers,
         "tests/security/leak_planted_case.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 passed" in out and "SECRET LEAKS" in out, out
    assert "log record of bot.planted" in out and "Slack chat.postMessage call" in out, out
    assert DEPLOY_PASSWORD not in out and HUB_PASSWORD not in out
