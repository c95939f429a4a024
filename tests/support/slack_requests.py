"""Requests exactly as Slack sends them to ``/slack/events``, and the bot to send them to.

Why: Bolt verifies every request (signature, 5-minute window) before a listener runs, so a test
that calls a listener directly proves nothing about what Slack's real requests do to the bot.
These helpers build the bodies byte for byte as Slack does, sign them with an HMAC written here
(not slack_sdk's ``SignatureVerifier``: a shared bug would cancel out), and post them over real
HTTP to the bot started the way ``python -m bot serve`` starts it.

Formats (each checked against the page named):

- Signing — https://docs.slack.dev/authentication/verifying-requests-from-slack (also
  https://api.slack.com/authentication/verifying-requests-from-slack): the base string is
  ``v0:{X-Slack-Request-Timestamp}:{raw body}``, HMAC-SHA256 keyed with the signing secret, hex,
  sent as ``X-Slack-Signature: v0=<hex>``; requests older than five minutes are to be refused.
  ``sign`` reproduces that page's worked example (``DOC_EXAMPLE``).
- Slash commands — https://api.slack.com/interactivity/slash-commands: a form body with
  ``token`` (deprecated verification token), ``team_id``, ``team_domain``, ``enterprise_id``,
  ``enterprise_name``, ``channel_id``, ``channel_name``, ``user_id``, ``user_name``, ``command``,
  ``text``, ``response_url``, ``trigger_id``, ``api_app_id`` (plus ``is_enterprise_install``).
- Interactivity — https://docs.slack.dev/reference/interaction-payloads/block_actions-payload: a
  form body with one field, ``payload``, holding the JSON of a ``block_actions`` payload.
- Events API — https://docs.slack.dev/reference/events/app_mention (envelope ``event_callback``
  with ``token``, ``team_id``, ``api_app_id``, ``event``, ``event_id``, ``event_time``,
  ``authorizations``) and https://api.slack.com/events/url_verification; a JSON body. Retries carry
  ``X-Slack-Retry-Num`` and ``X-Slack-Retry-Reason`` (``http_timeout``, ...) with the same
  ``event_id`` — https://api.slack.com/apis/events-api#retries.

Slack escapes ``/`` as ``\\/`` in the JSON it sends (captured payloads show
``"response_url":"https:\\/\\/hooks.slack.com\\/..."``), so the bodies here do too.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

from slack_bolt import App

from bot.app import Runtime, build_bolt_app, build_runtime
from bot.config import Settings, load_settings
from bot.kube.client import KubeClient
from bot.server import HttpServer, make_http_server
from bot.sim.server import SimCluster
from bot.sim.slack import SlackStandIn
from bot.store import RedisStore
from tests.support.redis import redis_store

#: The workspace the stand-in plays (SlackStandIn's defaults) and the people in it.
TEAM_ID = "T0IMAGEPUL"
TEAM_DOMAIN = "imagepull-test"
APP_ID = "A0IMGBOT01"
BOT_USER_ID = "U0IMGBOT01"
ALICE = ("U0ALICE001", "alice")
ALERTS = ("C0ALERTS01", "imagepull-alerts")
#: The deprecated verification token Slack still puts in every body; Bolt ignores it.
VERIFICATION_TOKEN = "xyzz0WbapA4vBCDEFasx0q6G"
SIGNING_SECRET = "test-signing-secret"
#: Slack's documented user agent for requests to apps.
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
#: Bolt (slack_sdk.signature) refuses timestamps further than this from now, either way.
MAX_SKEW_SECONDS = 5 * 60

#: The worked example on https://docs.slack.dev/authentication/verifying-requests-from-slack:
#: (signing secret, timestamp, raw body, X-Slack-Signature).
DOC_EXAMPLE = (
    "8f742231b10e8888abcd99yyyzzz85a5",
    1531420618,
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
)

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


# -- signing ------------------------------------------------------------------------------------
def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds to every request: timestamp and ``v0=`` HMAC-SHA256."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode("ascii") + b":" + body
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


# -- bodies -------------------------------------------------------------------------------------
def slack_json(obj: Any) -> str:
    """JSON the way Slack writes it: compact, non-ASCII kept, ``/`` escaped as ``\\/``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def new_trigger_id() -> str:
    """A fresh ``trigger_id`` shaped like Slack's (``<digits>.<digits>.<32 hex>``)."""
    return (f"{secrets.randbelow(10**12):012d}.{secrets.randbelow(10**11):011d}."
            f"{secrets.token_hex(16)}")


def message_ts(at: float | None = None) -> str:
    """A Slack message timestamp: seconds, a dot, six digits."""
    micros = int((time.time() if at is None else at) * 1_000_000)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def new_event_id() -> str:
    return "Ev" + secrets.token_hex(5).upper()


def slash_command(
    text: str,
    *,
    response_url: str,
    user_id: str = ALICE[0],
    user_name: str = ALICE[1],
    channel_id: str = ALERTS[0],
    channel_name: str = ALERTS[1],
    command: str = "/imagepull",
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    enterprise_id: str | None = None,
    enterprise_name: str | None = None,
    api_app_id: str | None = APP_ID,
    is_enterprise_install: str | None = "false",
    token: str = VERIFICATION_TOKEN,
) -> bytes:
    """A slash command's form body, fields in Slack's order (``None`` leaves a field out, as
    Slack does for ``enterprise_*`` outside Enterprise Grid)."""
    fields: list[tuple[str, str | None]] = [
        ("token", token), ("team_id", team_id), ("team_domain", team_domain),
        ("enterprise_id", enterprise_id), ("enterprise_name", enterprise_name),
        ("channel_id", channel_id), ("channel_name", channel_name),
        ("user_id", user_id), ("user_name", user_name), ("command", command), ("text", text),
        ("response_url", response_url),
        ("trigger_id", trigger_id if trigger_id is not None else new_trigger_id()),
        ("api_app_id", api_app_id), ("is_enterprise_install", is_enterprise_install),
    ]
    return urlencode([(k, v) for k, v in fields if v is not None]).encode("utf-8")


def _find_button(blocks: Iterable[Mapping[str, Any]], action_id: str
                 ) -> tuple[str | None, Mapping[str, Any] | None]:
    for block in blocks:
        elements = block.get("elements") or []
        accessory = block.get("accessory")
        for element in [*elements, *([accessory] if accessory else [])]:
            if isinstance(element, Mapping) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, None


def pressed_message(message: Any) -> dict[str, Any]:
    """A posted message (the Slack stand-in's record) as Slack puts it in a block_actions
    payload's `message`: its ts, text, blocks, the bot as author, and `thread_ts` when it is a
    reply in a thread."""
    stored: dict[str, Any] = {"ts": message.ts, "type": "message", "text": message.text,
                              "blocks": message.blocks, "user": BOT_USER_ID}
    if getattr(message, "thread_ts", None):
        stored["thread_ts"] = message.thread_ts
    return stored


def block_action(
    action_id: str,
    value: str,
    *,
    message: Mapping[str, Any],
    response_url: str,
    user_id: str = ALICE[0],
    user_name: str = ALICE[1],
    channel_id: str = ALERTS[0],
    channel_name: str = ALERTS[1],
    container: Mapping[str, Any] | None = None,
    trigger_id: str | None = None,
    action_ts: str | None = None,
    block_id: str | None = None,
    text: str | None = None,
    style: str | None = None,
    confirm: Mapping[str, Any] | None = None,
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    enterprise_id: str | None = None,
    api_app_id: str = APP_ID,
    is_enterprise_install: bool = False,
    is_ephemeral: bool = False,
    token: str = VERIFICATION_TOKEN,
) -> bytes:
    """A button click on ``message`` (the message dict as Slack stores it, with ``ts`` and
    ``blocks``): the form body ``payload=<block_actions JSON>``.

    ``block_id``, the button's ``text``, ``style`` and ``confirm`` default to what the button
    with ``action_id`` in ``message["blocks"]`` declares, as Slack echoes them back."""
    found_block, button = _find_button(message.get("blocks") or [], action_id)
    button = button or {}
    label = text if text is not None else _text_of(button.get("text")) or action_id
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or found_block or secrets.token_hex(3),
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": action_ts or message_ts(),
    }
    if style or button.get("style"):
        action["style"] = style or button.get("style")
    if confirm or button.get("confirm"):
        action["confirm"] = dict(confirm or button.get("confirm") or {})
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": token,
        "container": dict(container) if container is not None else {
            "type": "message", "message_ts": message["ts"], "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": {"id": enterprise_id, "name": enterprise_id} if enterprise_id else None,
        "is_enterprise_install": is_enterprise_install,
        "channel": {"id": channel_id, "name": channel_name},
        "message": dict(message),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    return urlencode({"payload": slack_json(payload)}).encode("utf-8")


def _text_of(obj: Any) -> str | None:
    if isinstance(obj, Mapping):
        return str(obj.get("text") or "") or None
    return str(obj) if obj else None


def event_callback(
    event: Mapping[str, Any],
    *,
    event_id: str | None = None,
    event_time: int | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    token: str = VERIFICATION_TOKEN,
) -> bytes:
    """The Events API envelope around ``event`` (JSON body)."""
    envelope = {
        "token": token,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_urlsafe(24),
    }
    return slack_json(envelope).encode("utf-8")


def app_mention_event(
    text: str,
    *,
    user: str = ALICE[0],
    channel: str = ALERTS[0],
    ts: str | None = None,
    event_id: str | None = None,
    thread_ts: str | None = None,
    event_time: int | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    token: str = VERIFICATION_TOKEN,
) -> bytes:
    """An ``app_mention`` event in its ``event_callback`` envelope. ``text`` is the message as
    typed, mention included (``f"<@{BOT_USER_ID}> status"``)."""
    ts = ts or message_ts()
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": [{"type": "rich_text", "block_id": secrets.token_hex(2), "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_callback(event, event_id=event_id, event_time=event_time, team_id=team_id,
                          api_app_id=api_app_id, bot_user_id=bot_user_id, token=token)


def url_verification(challenge: str | None = None, token: str = VERIFICATION_TOKEN) -> bytes:
    """The one-time ``url_verification`` request sent when the Request URL is saved."""
    body = {"token": token, "challenge": challenge or secrets.token_urlsafe(36),
            "type": "url_verification"}
    return slack_json(body).encode("utf-8")


# -- the client ---------------------------------------------------------------------------------
class Reply(NamedTuple):
    """What the bot answered: HTTP status, raw body, seconds until the answer was read."""

    status: int
    body: bytes
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class SlackClientForTests:
    """Posts to ``/slack/events`` as Slack does — or as an attacker or a broken proxy would.

    Every option defaults to a genuine request; each one breaks exactly one thing:

    - ``secret``: sign with another secret (a forgery);
    - ``timestamp`` / ``stale=True``: the timestamp header (stale: now - 6 minutes, re-signed, so
      only the age is wrong);
    - ``signed_body``: sign these bytes but send ``body`` (a body altered after signing);
    - ``drop``: header names to leave out (``"X-Slack-Signature"``, ...);
    - ``retry_num`` / ``retry_reason``: an Events API redelivery (``X-Slack-Retry-Num``);
    - ``headers``: anything else, last (overrides).
    """

    def __init__(self, base_url: str, signing_secret: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port
        self.signing_secret = signing_secret
        self.timeout = timeout

    def headers_for(
        self,
        body: bytes,
        content_type: str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        stale: bool = False,
        signed_body: bytes | None = None,
        drop: Iterable[str] = (),
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        if stale and timestamp is None:
            timestamp = int(time.time()) - 6 * 60
        out = {"Content-Type": content_type, "User-Agent": USER_AGENT,
               "Accept": "*/*", "Accept-Encoding": "gzip,deflate"}
        out.update(sign(body if signed_body is None else signed_body,
                        self.signing_secret if secret is None else secret, timestamp))
        if retry_num is not None:
            out["X-Slack-Retry-Num"] = str(retry_num)
            out["X-Slack-Retry-Reason"] = retry_reason
        out.update(headers or {})
        dropped = {d.lower() for d in drop}
        return {k: v for k, v in out.items() if k.lower() not in dropped}

    def post(self, body: bytes, content_type: str, *, path: str = "/slack/events",
             **options: Any) -> Reply:
        return self.request("POST", path, body, self.headers_for(body, content_type, **options))

    def event(self, body: bytes, **options: Any) -> Reply:
        """An Events API delivery (JSON)."""
        return self.post(body, JSON_TYPE, **options)

    def form(self, body: bytes, **options: Any) -> Reply:
        """A slash command or an interaction (form-encoded)."""
        return self.post(body, FORM_TYPE, **options)

    def get(self, path: str) -> Reply:
        return self.request("GET", path, b"", {"User-Agent": "kube-probe/1.33"})

    def request(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            started = time.monotonic()
            conn.request(method, path, body=body or None, headers=dict(headers))
            response = conn.getresponse()
            data = response.read()
            return Reply(response.status, data, time.monotonic() - started)
        finally:
            conn.close()


# -- the bot ------------------------------------------------------------------------------------
@dataclass
class BotUnderTest:
    """The bot as ``python -m bot serve`` runs it, plus everything it talks to."""

    url: str
    sim: SimCluster
    slack: SlackStandIn
    store: RedisStore
    settings: Settings
    runtime: Runtime
    bolt: App
    server: HttpServer
    client: SlackClientForTests
    env: dict[str, str] = field(default_factory=dict)

    def start_runtime(self) -> None:
        """What ``serve`` does after binding the port (only needed with ``start=False``)."""
        self.runtime.start()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """The process environment with `values` set, restored afterwards (settings are read
    from it once, when a bot is built)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def running_bot(
    *,
    signing_secret: str = SIGNING_SECRET,
    env: Mapping[str, str] | None = None,
    start: bool = True,
    workdir: Path | None = None,
    store: RedisStore | None = None,
) -> Iterator[BotUnderTest]:
    """Start the whole bot on ``127.0.0.1:<free port>`` against a scenario cluster, a Slack
    stand-in and real Redis; stop all of it afterwards.

    Settings come from environment variables, as in production (restored on exit); ``env``
    adds or overrides some. With ``start=False`` the HTTP server runs but the runtime (watchers,
    scheduler) is not started yet: ``/readyz`` says "starting" until ``start_runtime()``.
    ``store``: a store of the test's own (e.g. on a private Redis the test stops)."""
    with ExitStack() as stack:
        sim = stack.enter_context(SimCluster())
        slack = stack.enter_context(SlackStandIn())
        if store is None:
            store = stack.enter_context(redis_store())
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ipb-")))
        kubeconfig = sim.write_kubeconfig(workdir / "kubeconfig")
        values = {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": signing_secret, "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": f"#{ALERTS[1]}", "CLUSTER_NAME": "test",
            "GROUP_WAIT_SECONDS": "1", "GROUP_INTERVAL_SECONDS": "2",
            "SWEEP_INTERVAL_SECONDS": "1", "REGISTRY_PROBE": "false", "PORT": "3000",
            **(env or {}),
        }
        stack.enter_context(environment(values))
        settings = load_settings()
        kube = KubeClient.from_environment(str(kubeconfig), read_secrets=settings.read_secrets)
        runtime = build_runtime(settings, kube=kube, store=store)
        for watcher in runtime.watchers:
            watcher.idle_timeout = 0.5  # so stop() returns quickly
        stack.callback(runtime.stop)
        bolt = build_bolt_app(settings, runtime)
        server = make_http_server(bolt, runtime, "127.0.0.1", 0)
        stack.callback(server.server_close)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="bot-http", daemon=True)
        thread.start()
        stack.callback(thread.join, 5)
        stack.callback(server.shutdown)
        if start:
            runtime.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield BotUnderTest(url=url, sim=sim, slack=slack, store=store, settings=settings,
                           runtime=runtime, bolt=bolt, server=server,
                           client=SlackClientForTests(url, signing_secret), env=values)


def button_value(message: Any, action_id: str) -> str:
    """The value of the button `action_id` in a message the Slack stand-in recorded."""
    for block in message.blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {message.text!r}")
