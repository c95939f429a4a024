"""Slack listeners: thin — parse, authorise, ack within 3 s, then call bot/ services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt import App

if TYPE_CHECKING:
    from bot.app import Runtime


def register(app: App, runtime: Runtime) -> None:
    """Attach every listener to `app`."""
    from handlers import actions, commands, dedupe, health

    dedupe.register(app, runtime)
    health.register(app, runtime)
    commands.register(app, runtime)
    actions.register(app, runtime)
