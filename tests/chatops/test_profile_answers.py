"""What people see in Slack from a read-only or a no-secrets install (the read-only and
no-secrets profiles in deploy/overlays/): the whole bot through its HTTP endpoint, as
tests/chatops/test_interactive.py drives it, with the profile's setting.

Read-only: the alert offers no remediation button even where the default install offers
"Set image" and "Rollout restart", `/imagepull restart` answers why with the command to run,
and nothing is patched or posted for approval. No-secrets: the bot sends no request for a
secret, the alert says the pull-secret checks were skipped, and `/imagepull verify-secret`
explains how to grant the read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.sim import factory
from bot.sim.registry import SimRegistry
from bot.slack import actions
from tests.chatops.test_interactive import (
    ALERTS,
    CAROL,
    WEB_IMAGE,
    alert_with,
    answer,
    command,
    failing_web,
    patches,
    start,
)
from tests.support.slack_requests import BotUnderTest
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def registry() -> Iterator[SimRegistry]:
    with SimRegistry("registry.internal", {"shop/web": ["v2.1", "v2.0"]}) as reg:
        yield reg


def buttons(message: Any) -> set[str]:
    return {e.get("action_id") for b in message.blocks for e in b.get("elements", [])
            if b.get("type") == "actions"}


def settled_root(bot: BotUnderTest) -> Any:
    """The alert once the registry's answer is in (its evidence names the registry)."""
    def find() -> Any:
        for root in bot.slack.channel_history(ALERTS[0]):
            if "Registry* (asked by the bot)" in str(root.blocks):
                return root
        return None

    return wait_for(find, timeout=20, what="the alert with the registry's answer")


def test_the_default_install_offers_remediation(registry: SimRegistry) -> None:
    """The control: the same alert from a default install has both remediation buttons."""
    with start(registry) as bot:
        failing_web(bot)
        root = alert_with(bot, actions.SET_IMAGE)
        assert {actions.SET_IMAGE, actions.RESTART} <= buttons(root)


def test_read_only_offers_no_remediation_and_says_why(registry: SimRegistry) -> None:
    with start(registry, REMEDIATION_ENABLED="false") as bot:
        failing_web(bot)
        root = settled_root(bot)
        assert not {actions.SET_IMAGE, actions.RESTART} & buttons(root), buttons(root)
        # the fix is still there, as a command to run
        assert "kubectl set image deployment/web web=registry.internal/shop/web:v2.1" in str(
            root.blocks)
        reply, name = command(bot, "restart shop/deployment/web", user=CAROL)
        assert reply.status == 200
        text = answer(bot, name)["text"]
        assert "this install is read-only: remediation is disabled (REMEDIATION_ENABLED=false, "\
               "the read-only profile); run the command yourself: kubectl rollout restart " \
               "deployment/web -n shop" in text, text
        assert patches(bot) == []
        assert not [m for m in bot.slack.channel_history(ALERTS[0])
                    for r in [m, *m.replies] if "Approval needed" in r.text]


def test_no_secrets_reads_no_secret_and_says_what_it_skipped(registry: SimRegistry) -> None:
    image = "registry.internal/shop/private:1.0"
    with start(registry, READ_SECRETS="false") as bot:
        for obj in factory.failing_deployment(
                "shop", "private", image, factory.containerd_error("unauthorized", image),
                pull_secrets=["regcred"]):
            bot.sim.apply(obj)
        root = wait_for(lambda: bot.slack.channel_history(ALERTS[0]), what="the alert")[0]
        assert "pull-secret checks were skipped" in str(root.blocks)
        assert "READ_SECRETS=false" in str(root.blocks)
        assert actions.VERIFY_SECRET not in buttons(root)  # it could only say it may not look
        reply, name = command(bot, f"verify-secret shop/regcred --image {WEB_IMAGE}")
        assert reply.status == 200
        text = answer(bot, name)["text"]
        assert "cannot be verified: this install does not read secrets" in text
        assert "deploy/rbac/secrets" in text and "READ_SECRETS=true" in text
        assert [a for a in bot.sim.access_log if a[2] == "secrets"] == []
