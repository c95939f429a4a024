"""Slack delivering what people do to an app's Request URL: the Slack stand-in's outbound side.

`SlackStandIn` plays the Web API the bot calls; this plays the other direction, which the
`--fleet` demo needs to show routing between agents: a person types `/imagepull …` or presses a
button, and Slack POSTs it to *one* endpoint of the app (whichever agent is behind it), signed
as Slack signs it (https://docs.slack.dev/authentication/verifying-requests-from-slack:
`v0:{timestamp}:{raw body}`, HMAC-SHA256 with the app's signing secret; the signature comes
from slack_sdk, the same library the bot verifies with, because this is a demo of routing, not
a test of signing: tests/support/slack_requests.py signs on its own for that). Bodies have the
fields Slack documents (slash commands: a form body; buttons: `payload=` with the
`block_actions` JSON) and carry a response_url on the stand-in bound to the channel, so what
the bot answers shows in the transcript where the person would see it; the ack body of a slash
command is shown too (Slack shows it to the person who typed the command).
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

from bot.sim.slack import Message, ResponsePost, SlackStandIn

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Person:
    """Someone in the stand-in's workspace."""

    id: str
    name: str


@dataclass(frozen=True)
class Delivered:
    """What the endpoint answered (status, body, seconds until it did) and the name of the
    response_url the request carried (its later answers: `SlackStandIn.responses(name)`)."""

    status: int
    body: str
    elapsed: float
    response_url: str

    def text(self) -> str:
        """The ack's text (a slash command's answer within Slack's 3 s), or ""."""
        try:
            parsed = json.loads(self.body) if self.body else {}
        except ValueError:
            return self.body
        return str(parsed.get("text") or "") if isinstance(parsed, dict) else ""


class RequestUrl:
    """One agent's `/slack/events` (`url`: the agent's http://host:port), as Slack posts to it
    on behalf of the stand-in's people."""

    def __init__(self, slack: SlackStandIn, url: str, signing_secret: str) -> None:
        self.slack = slack
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"expected http://host:port, got {url!r}")
        self.host, self.port = parts.hostname, parts.port
        self._signer = SignatureVerifier(signing_secret)

    def command(self, text: str, *, person: Person, channel: str,
                command: str = "/imagepull") -> Delivered:
        """`person` types `command text` in `channel` (an id the stand-in knows)."""
        name = self._response_url_name("cmd")
        url = self.slack.response_url(name, channel=channel, user=person.id)
        body = urlencode({
            "token": "verification-token-unused", "team_id": self.slack.team_id,
            "team_domain": "imagepull-demo", "channel_id": channel,
            "channel_name": self.slack.channel_name(channel), "user_id": person.id,
            "user_name": person.name, "command": command, "text": text, "response_url": url,
            "trigger_id": _trigger_id(), "api_app_id": self.slack.app_id,
            "is_enterprise_install": "false"})
        delivered = self._post(body, name)
        if delivered.status == 200 and delivered.body:
            try:
                ack = json.loads(delivered.body)
            except ValueError:  # a plain-text ack: Slack shows the text as it is
                ack = {"text": delivered.body}
            if isinstance(ack, dict):
                self.slack.app_answered(name, ack)
        return delivered

    def click(self, message: Message, action_id: str, *, person: Person) -> Delivered:
        """`person` presses the button `action_id` on `message` (as the stand-in stores it)."""
        block_id, button = _button(message, action_id)
        name = self._response_url_name("click")
        url = self.slack.response_url(name, channel=message.channel, user=person.id)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": person.id, "username": person.name, "name": person.name,
                     "team_id": self.slack.team_id},
            "api_app_id": self.slack.app_id, "token": "verification-token-unused",
            "container": {"type": "message", "message_ts": message.ts,
                          "channel_id": message.channel, "is_ephemeral": False,
                          **({"thread_ts": message.thread_ts} if message.thread_ts else {})},
            "trigger_id": _trigger_id(),
            "team": {"id": self.slack.team_id, "domain": "imagepull-demo"},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": self.slack.channel_name(message.channel)},
            "message": message.to_api(self.slack.team_id, self.slack.bot_id,
                                      self.slack.app_id),
            "state": {"values": {}}, "response_url": url,
            "actions": [{"action_id": action_id, "block_id": block_id,
                         "text": button.get("text") or {"type": "plain_text",
                                                        "text": action_id},
                         "value": str(button.get("value", "")), "type": "button",
                         "action_ts": f"{time.time():.6f}"}],
        }
        return self._post(urlencode({"payload": json.dumps(payload)}), name)

    def answers(self, delivered: Delivered) -> list[ResponsePost]:
        """What the bot posted to the request's response_url so far."""
        return self.slack.responses(delivered.response_url)

    def _post(self, body: str, name: str) -> Delivered:
        timestamp = str(int(time.time()))
        headers = {"Content-Type": FORM_TYPE, "X-Slack-Request-Timestamp": timestamp,
                   "X-Slack-Signature": str(self._signer.generate_signature(
                       timestamp=timestamp, body=body)),
                   "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        started = time.monotonic()
        try:
            conn.request("POST", "/slack/events", body=body.encode(), headers=headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
        finally:
            conn.close()
        return Delivered(status, data.decode("utf-8", "replace"), time.monotonic() - started,
                         name)

    @staticmethod
    def _response_url_name(kind: str) -> str:
        return f"{kind}-{uuid.uuid4().hex[:8]}"


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**12):012d}.{secrets.randbelow(10**11):011d}." \
           f"{secrets.token_hex(16)}"


def _button(message: Message, action_id: str) -> tuple[str, dict[str, Any]]:
    for block in message.blocks:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id") or secrets.token_hex(3)), element
    raise LookupError(f"no {action_id} button on the message {message.ts}")
