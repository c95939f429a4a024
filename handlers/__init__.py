"""Slack's Bolt listeners, thin as in bolt-python: read the request, ack within 3 s, call a
service from bot/chatops, answer. `middleware` runs before every listener; `guard` wraps each
listener so that every failure is answered in words.

Each module's `register` takes exactly the services it calls, from the composition root
(bot/app.py), so nothing here reaches back into the app.
"""

from __future__ import annotations

from slack_bolt import App

from bot.alerts.incidents import IncidentManager
from bot.chatops.approvals import ApprovalService
from bot.chatops.interactive import Interactive
from bot.store import Store
from handlers import actions, commands, mentions, middleware


def register(app: App, *, interactive: Interactive, approvals: ApprovalService,
             incidents: IncidentManager, store: Store, cluster_name: str) -> None:
    """Attach the middleware and every listener to `app`."""
    middleware.register(app, store)
    mentions.register(app, incidents, cluster_name)
    commands.register(app, interactive)
    actions.register(app, interactive, approvals)
