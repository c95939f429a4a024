"""The app_mention listener: a quick "are you there" answer in the channel."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, Say

from bot.alerts.incidents import IncidentManager
from bot.slack.text import Mrkdwn, code
from handlers.guard import answers_failures


def register(app: App, incidents: IncidentManager, cluster_name: str) -> None:
    @app.event("app_mention")
    @answers_failures
    def mentioned(event: dict[str, Any], say: Say) -> None:
        active = len(incidents.active_ids())
        say(text=Mrkdwn("imagepull-bot watching cluster {}: {} open incident(s). "
                        "Try `/imagepull help`.").format(code(cluster_name),
                                                         active),
            thread_ts=event.get("thread_ts") or event.get("ts"))
