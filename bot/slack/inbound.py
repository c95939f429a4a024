"""The edge of `/slack/events`: what gets past it is signed by Slack and shaped as Slack sends.

Why a gate in front of Bolt: Bolt's WSGI adapter parses the body (JSON, `payload=` JSON) and
builds its request context before its own signature middleware runs, so an unsigned body that
is not JSON, a non-numeric timestamp or a crafted payload became a 500 with a traceback. Here
the order is: size, signature (slack_sdk's verifier, 5-minute window), then the body parsed
exactly as Bolt will parse it, then the shape of button presses (`BlockActions`). Anything
refused is one warning line and a short JSON answer, never a traceback:

- 413: body over `MAX_BODY_BYTES` (Slack's bodies are a few kB);
- 401: missing, forged or stale signature, or a timestamp that is not a number;
- 400: signed, but not JSON / a form / a `payload=` holding a JSON object, or a button press
  whose fields are not what Slack sends (answered politely through its response_url too).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
_TIMESTAMP = re.compile(r"[0-9]{1,15}")

#: What a person sees when their (signed) button press cannot be read.
UNREADABLE_BUTTON = "I could not read that button press; nothing was changed."


class Refused(Exception):
    """The request stops here: HTTP `status`, a short public `error`, a log `reason`."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


@dataclass(frozen=True)
class Admitted:
    """A signed, well-formed request: the raw body (for Bolt) and what it parses to."""

    body: bytes
    payload: dict[str, Any]


# -- button presses ---------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Id(_Model):
    id: StrictStr = Field(min_length=1, max_length=64)


class ActionPayload(_Model):
    action_id: StrictStr = Field(min_length=1, max_length=255)
    value: StrictStr = Field(default="", max_length=2000)


class _Container(_Model):
    channel_id: StrictStr | None = None
    message_ts: StrictStr | None = None
    thread_ts: StrictStr | None = None
    is_ephemeral: StrictBool | None = None


class _PressedMessage(_Model):
    thread_ts: StrictStr | None = None


class BlockActions(_Model):
    """The fields of a block_actions payload the bot reads, typed as Slack documents them
    (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload). Team and
    enterprise are checked too: Bolt reads them to build its context."""

    type: Literal["block_actions"]
    user: _Id
    actions: list[ActionPayload] = Field(min_length=1, max_length=25)
    channel: _Id | None = None
    container: _Container | None = None
    team: _Id | None = None
    enterprise: _Id | None = None
    response_url: StrictStr | None = None
    message: _PressedMessage | None = None

    @property
    def action(self) -> ActionPayload:
        return self.actions[0]

    @property
    def thread(self) -> tuple[str, str] | None:
        """(channel, thread ts) of the thread the pressed message starts or is a reply in:
        where an answer to an alert button belongs even before the bot has recorded where its
        alert went (Slack shows the alert, and so its buttons, before chat.postMessage has
        answered the bot). None for an ephemeral message or a press outside a message."""
        box = self.container
        if box is None or box.is_ephemeral or not box.message_ts or not self.channel_id:
            return None
        in_thread = box.thread_ts or (self.message.thread_ts if self.message else None)
        return self.channel_id, in_thread or box.message_ts

    @property
    def channel_id(self) -> str:
        if self.channel is not None:
            return self.channel.id
        return (self.container.channel_id if self.container else None) or ""


class MalformedPayload(ValueError):
    """A signed interaction whose fields are not what Slack sends."""


def read_block_actions(payload: Any) -> BlockActions:
    """The typed button press, or MalformedPayload (with a one-line reason for the log)."""
    try:
        return BlockActions.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise MalformedPayload(f"block_actions {where}: {first.get('msg')}") from None


class AnsweredAlready(Exception):
    """The request was answered through its response_url; acknowledge it and stop."""


def screen_interaction(payload: Any) -> None:
    """The check both transports make before Bolt sees an interaction (`/slack/events` in
    bot/server.py, Socket Mode in bot/slack/socket_mode.py): a button press whose fields are
    not Slack's never reaches Bolt (whose context building raises on, e.g., a numeric `user`).
    The person gets a polite answer through the response_url (AnsweredAlready); without a
    usable one the request is Refused(400)."""
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return
    try:
        read_block_actions(payload)
    except MalformedPayload as exc:
        url = response_url_of(payload)
        if url is None:
            raise Refused(400, "malformed request", str(exc)) from None
        log.warning("slack button press refused: %s", exc)
        answer_privately(url, UNREADABLE_BUTTON, timeout=2)
        raise AnsweredAlready from None


def answer_privately(url: str | None, text: str, *, timeout: int = 3) -> None:
    """An ephemeral note to the person through a request's response_url. A courtesy: what
    it accompanies (a refusal, a request sent elsewhere) stands without it, so a failure is
    logged, never raised."""
    if url is None:
        return
    try:
        WebhookClient(url, timeout=timeout).send(text=text, response_type="ephemeral",
                                                 replace_original=False)
    except Exception as exc:
        log.warning("could not answer through response_url: %s", type(exc).__name__)


def response_url_of(payload: Any) -> str | None:
    """The response_url of a payload we cannot otherwise read, if it looks like one."""
    url = payload.get("response_url") if isinstance(payload, dict) else None
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) < 2048:
        return url
    return None


# -- the gate -----------------------------------------------------------------------------------
class SlackGate:
    """Verify, then parse: `admit` returns an Admitted request or raises Refused."""

    def __init__(self, signing_secret: str | None, max_body: int = MAX_BODY_BYTES) -> None:
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.max_body = max_body

    def content_length(self, raw: str | None) -> int:
        if not raw:
            return 0
        if not raw.isdigit():
            raise Refused(400, "malformed request", f"Content-Length {raw[:20]!r}")
        length = int(raw)
        if length > self.max_body:
            raise Refused(413, "request too large", f"body of {length} bytes")
        return length

    def verify(self, body: bytes, timestamp: str | None, signature: str | None) -> None:
        if self._verifier is None:
            raise Refused(401, "invalid request", "no SLACK_SIGNING_SECRET configured")
        if not timestamp or not signature:
            raise Refused(401, "invalid request", "unsigned (no signature or timestamp)")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise Refused(401, "invalid request", "timestamp is not a number")
        try:
            valid = self._verifier.is_valid(body, timestamp, signature)
        except UnicodeDecodeError:  # the verifier decodes; Slack only ever signs UTF-8
            valid = False
        if not valid:
            raise Refused(401, "invalid request", "bad or stale signature")

    def parse(self, body: bytes, content_type: str | None) -> dict[str, Any]:
        """The body as Bolt's own `parse_body` will read it; a dict, or Refused(400)."""
        mime = (content_type or "").split(";", 1)[0].strip().lower()
        if mime not in (JSON_TYPE, FORM_TYPE):
            raise Refused(400, "malformed request", f"content type {mime[:60]!r}")
        try:
            text = body.decode("utf-8")
            parsed = parse_body(text, mime)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            raise Refused(400, "malformed request", f"body: {type(exc).__name__}") from None
        if not isinstance(parsed, dict):
            raise Refused(400, "malformed request", "body is not a JSON object")
        return parsed

    def admit(self, body: bytes, *, content_type: str | None, timestamp: str | None,
              signature: str | None) -> Admitted:
        self.verify(body, timestamp, signature)
        return Admitted(body, self.parse(body, content_type))
