"""Buttons: ack at once; alert buttons carry an incident id, approval buttons a request id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot.approvals import ACTION_APPROVE, ACTION_DENY
from bot.slack_blocks import ACTION_QUOTA, ACTION_RESTART, ACTION_SET_IMAGE, ACTION_VERIFY_SECRET

if TYPE_CHECKING:
    from bot.app import Runtime

ALERT_BUTTONS = {ACTION_QUOTA: "quota", ACTION_VERIFY_SECRET: "verify_secret",
                 ACTION_RESTART: "restart", ACTION_SET_IMAGE: "set_image"}


def _clicked(body: dict[str, Any]) -> tuple[str, str, str]:
    """(user id, button value, channel id) from a block_actions payload."""
    action = (body.get("actions") or [{}])[0]
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id", "")
    return str((body.get("user") or {}).get("id")), str(action.get("value") or ""), str(channel)


def register(app: App, runtime: Runtime) -> None:
    def alert_button(name: str) -> Any:
        def handler(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            ack()
            user, incident_id, channel = _clicked(body)
            text, blocks = runtime.interactive.button(name, incident_id, user, channel)
            respond(text=text, blocks=blocks, response_type="ephemeral",
                    replace_original=False)

        return handler

    for action_id, name in ALERT_BUTTONS.items():
        app.action(action_id)(alert_button(name))

    def decision(approve: bool) -> Any:
        def handler(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            ack()
            user, request_id, _ = _clicked(body)
            result = runtime.approvals.decide(request_id, user, approve)
            respond(text=result.message, response_type="ephemeral", replace_original=False)

        return handler

    app.action(ACTION_APPROVE)(decision(True))
    app.action(ACTION_DENY)(decision(False))
