"""Buttons: ack at once; alert buttons carry an incident id, approval buttons a request id.

The payload is read through bot.slack.inbound.BlockActions (typed: user.id and the action's
value are strings, there is at least one action) and the id is checked against the format the
bot mints before any store key is built from it; anything else is MalformedPayload, which the
guard answers with "I could not read that button press; nothing was changed."
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.alerts.incidents import INCIDENT_ID
from bot.chatops.approvals import REQUEST_ID, ApprovalService
from bot.chatops.interactive import Interactive
from bot.slack import actions
from bot.slack.inbound import BlockActions, MalformedPayload, read_block_actions
from handlers.guard import answers_failures


def _pressed(body: dict[str, Any], id_format: re.Pattern[str]) -> tuple[BlockActions, str]:
    """The typed payload and the id its button carries, or MalformedPayload."""
    press = read_block_actions(body)
    value = press.action.value
    if not id_format.fullmatch(value):
        raise MalformedPayload(f"{press.action.action_id}: value {value[:40]!r} is not an id "
                               "the bot made")
    return press, value


def register(app: App, interactive: Interactive, approvals: ApprovalService) -> None:
    def alert_button(name: str) -> Any:
        @answers_failures
        def alert_button_pressed(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            ack()
            press, incident_id = _pressed(body, INCIDENT_ID)
            text, blocks = interactive.button(name, incident_id, press.user.id,
                                              press.channel_id, press.thread)
            respond(text=text, blocks=blocks, response_type="ephemeral",
                    replace_original=False)

        return alert_button_pressed

    for action_id, name in actions.ALERT_BUTTONS.items():
        app.action(action_id)(alert_button(name))

    def decision(approve: bool) -> Any:
        @answers_failures
        def approval_decided(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            ack()
            press, request_id = _pressed(body, REQUEST_ID)
            result = approvals.decide(request_id, press.user.id, approve)
            respond(text=result.message, response_type="ephemeral", replace_original=False)

        return approval_decided

    app.action(actions.APPROVE)(decision(True))
    app.action(actions.DENY)(decision(False))
