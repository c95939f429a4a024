"""A local stand-in for the Slack Web API that the real ``slack_sdk.WebClient`` talks to.

Slack cannot be reached from CI or from ``make demo``, and mocking ``WebClient`` methods would
skip exactly what breaks in production: how the SDK encodes a call (JSON bodies for
``chat.*``/``views.*``, form bodies for ``auth.test``/``usergroups.users.list``, the
``Authorization: Bearer`` header), how it surfaces ``ok: false`` as ``SlackApiError``, and how its
retry handlers read ``Retry-After``. So this is an HTTP server that speaks Slack's wire format;
point a client at it with ``WebClient(token=..., base_url=standin.api_url)``.

What it follows from Slack's documentation (each limit below cites its page):

- Every method answers HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``
  (https://api.slack.com/web, https://docs.slack.dev/apis/web-api). Only rate limiting (429 with
  ``Retry-After`` in seconds, https://api.slack.com/docs/rate-limits) and outages (5xx) use other
  statuses.
- Tokens come as ``Authorization: Bearer`` or as a ``token`` POST parameter; a JSON body needs
  the header (https://api.slack.com/changelog/2017-10-keeping-up-with-the-jsons).
- Arguments come as query string, form body, or (write methods) a JSON body; in a form body,
  ``blocks``/``attachments``/``view`` are JSON strings
  (https://docs.slack.dev/reference/methods/chat.postMessage).

The stand-in keeps all state on the instance (no module globals), so several can run in one
process, e.g. two workspaces.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from bot.sim.lifecycle import HTTPListener, LoopbackService

JSON = dict[str, Any]
_T = TypeVar("_T")

DEFAULT_TOKEN = "xoxb-test-token"
DEFAULT_CHANNEL = ("imagepull-alerts", "C0ALERTS01")

# -- Slack's documented limits ----------------------------------------------------------------
#: "You can include up to 50 blocks in each message, and 100 blocks in modals or Home tabs."
#: https://docs.slack.dev/reference/block-kit/blocks
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
#: Section ``text``: "Maximum length for the text in this field is 3000 characters"; ``fields``:
#: "Maximum number of items is 10. Maximum length for the text in each item is 2000 characters."
#: https://api.slack.com/reference/block-kit/blocks#section
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
#: Text objects (the ``mrkdwn``/``plain_text`` elements of a context block) hold at most 3000
#: characters; a context block holds at most 10 elements.
#: https://api.slack.com/reference/block-kit/composition-objects#text,
#: https://api.slack.com/reference/block-kit/blocks#context
MAX_TEXT_OBJECT = 3000
MAX_CONTEXT_ELEMENTS = 10
#: Header text: "Maximum length for the text in this field is 150 characters."
#: https://api.slack.com/reference/block-kit/blocks#header
MAX_HEADER_TEXT = 150
#: Button text: "Maximum length for the text in this field is 75 characters."; an actions block
#: holds at most 25 elements. https://api.slack.com/reference/block-kit/block-elements#button
MAX_BUTTON_TEXT = 75
MAX_ACTIONS_ELEMENTS = 25
#: ``block_id``: "Maximum length for this field is 255 characters ... should be unique for each
#: message". https://api.slack.com/reference/block-kit/blocks
MAX_BLOCK_ID = 255
#: Slack truncates messages longer than 40,000 characters
#: (https://api.slack.com/changelog/2018-04-truncating-really-long-messages); the chat methods
#: list ``msg_too_long`` ("Message text is too long"). The stand-in answers ``msg_too_long`` so
#: a bot that would lose the end of its message finds out in tests instead of in the channel.
MAX_MESSAGE_TEXT = 40_000
#: response_url: "You can use a response_url up to five times within thirty minutes."
#: https://api.slack.com/interactivity/handling#message_responses
RESPONSE_URL_MAX_USES = 5

#: The methods whose arguments are JSON values even inside a form-encoded body.
_JSON_ARGS = ("blocks", "attachments", "view", "metadata", "user_auth_blocks")
_TRUE = ("1", "true", "True")


class SlackCallError(Exception):
    """Raised inside a method implementation: becomes ``{"ok": false, "error": ...}``."""

    def __init__(
        self,
        error: str,
        detail: Iterable[str] = (),
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.detail = list(detail)
        self.status = status
        self.headers = headers or {}

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error": self.error}
        if self.detail:
            # Slack's shape for block errors: ``errors`` plus ``response_metadata.messages``.
            body["errors"] = list(self.detail)
            body["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in self.detail]}
        return body


class SocketModeEndpoint(Protocol):
    """What ``apps.connections.open`` needs of bot/sim/socket_mode.py's stand-in."""

    app_token: str

    def issue_url(self) -> str: ...


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlackCall:
    """One request as the stand-in saw it, for assertions like "exactly one postMessage"."""

    method: str  # "chat.postMessage", or "response_url" for a response_url POST
    params: JSON  # merged query + form/JSON body; form JSON args (blocks, view) parsed
    headers: dict[str, str]  # Content-Type, User-Agent, Authorization (token masked)
    token: str | None  # the token presented (header or form field), if any
    at: float  # time.time() when the request arrived
    status: int  # HTTP status returned
    response: Any  # the JSON body returned (or the text body for response_url)
    verb: str = "POST"  # slack_sdk always POSTs; aiohttp's AsyncWebClient GETs read methods

    @property
    def ok(self) -> bool:
        return isinstance(self.response, dict) and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return self.response.get("error") if isinstance(self.response, dict) else None


@dataclass
class Revision:
    """A message's content at one point: the original post or one ``chat.update``."""

    text: str
    blocks: list[JSON]
    at: float


@dataclass
class Message:
    """A channel message as a person would see it: current content, edits, thread replies."""

    channel: str
    ts: str
    text: str
    blocks: list[JSON]
    user: str
    thread_ts: str | None = None
    reply_broadcast: bool = False
    unknown_thread: bool = False  # a reply whose thread_ts matched no message here
    params: JSON = field(default_factory=dict)  # the rest: unfurl_links, metadata, ...
    original: Revision | None = None
    edits: list[Revision] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)
    #: chat.postMessage ``metadata`` ({"event_type", "event_payload"}), returned by
    #: conversations.history / conversations.replies only with ``include_all_metadata``
    metadata: JSON | None = None

    @property
    def edited(self) -> bool:
        return bool(self.edits)

    def to_api(self, team_id: str, bot_id: str, app_id: str) -> JSON:
        """The ``message`` object Slack returns from chat.postMessage / chat.update."""
        out: JSON = {
            "type": "message",
            "text": self.text,
            "user": self.user,
            "bot_id": bot_id,
            "app_id": app_id,
            "team": team_id,
            "ts": self.ts,
        }
        if self.blocks:
            out["blocks"] = self.blocks
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
            out["parent_user_id"] = self.user
        if self.edits:
            out["edited"] = {"user": self.user, "ts": _ts_from_float(self.edits[-1].at)}
        return out

    def to_json(self) -> JSON:
        """Block Kit JSON for ``save_blocks``: what the channel holds now, plus its history."""
        out: JSON = {"ts": self.ts, "text": self.text, "blocks": self.blocks}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.edits:
            out["edited"] = True
            out["revisions"] = [
                {"text": r.text, "blocks": r.blocks}
                for r in ([self.original] if self.original else []) + self.edits
            ]
        if self.replies:
            out["replies"] = [r.to_json() for r in self.replies]
        return out


@dataclass
class Ephemeral:
    """A chat.postEphemeral (or ephemeral response_url) message: one user sees it."""

    channel: str
    user: str
    text: str
    blocks: list[JSON]
    message_ts: str
    thread_ts: str | None = None


@dataclass
class ResponsePost:
    """One POST to a response_url, as Slack would have received it."""

    name: str
    body: JSON
    at: float

    @property
    def response_type(self) -> str:
        return str(self.body.get("response_type") or "ephemeral")

    @property
    def replace_original(self) -> bool:
        return _truthy(self.body.get("replace_original"))

    @property
    def delete_original(self) -> bool:
        return _truthy(self.body.get("delete_original"))


@dataclass
class _ResponseUrl:
    name: str
    channel: str | None
    user: str | None
    max_uses: int
    posts: list[ResponsePost] = field(default_factory=list)


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    error: str | None
    remaining: int
    effect: bool = False  # the call takes effect, then the failure is answered


@dataclass
class _Bucket:
    tokens: float
    updated: float


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value in _TRUE) or value == 1


def _ts_from_float(t: float) -> str:
    micros = int(t * 1_000_000)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _ts_key(ts: str) -> tuple[int, int]:
    secs, _, frac = ts.partition(".")
    try:
        return int(secs), int(frac or 0)
    except ValueError:
        return 0, 0


# -- the stand-in ------------------------------------------------------------------------------
class SlackStandIn(LoopbackService):
    """A fake Slack workspace reachable by ``slack_sdk``/``slack_bolt`` over HTTP.

    Usage::

        with SlackStandIn() as slack:
            client = WebClient(token=slack.token, base_url=slack.api_url)
            client.chat_postMessage(channel="#imagepull-alerts", text="hi")
            assert len(slack.calls_to("chat.postMessage")) == 1
            print(slack.render_transcript())
    """

    #: Called with every call any stand-in records (the test session scans them for leaked
    #: secrets, tests/conftest.py). Observers must be quick and must not raise.
    observers: ClassVar[list[Callable[[SlackCall], None]]] = []

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        team: str = "Imagepull Test",
        team_id: str = "T0IMAGEPUL",
        bot_user: str = "imagepull-bot",
        bot_user_id: str = "U0IMGBOT01",
        bot_id: str = "B0IMGBOT01",
        app_id: str = "A0IMGBOT01",
        start_ts: float | None = None,
    ) -> None:
        """``start_ts`` makes message timestamps deterministic (each new ``ts`` is 100 µs after
        the last), for golden transcripts; by default they follow the wall clock like Slack's."""
        self.token = token
        self.host, self._port = host, port
        self.team, self.team_id = team, team_id
        self.bot_user, self.bot_user_id = bot_user, bot_user_id
        self.bot_id, self.app_id = bot_id, app_id
        self.calls: list[SlackCall] = []
        self.ephemerals: list[Ephemeral] = []
        self.views: list[JSON] = []
        self._lock = threading.RLock()
        self._channels: dict[str, str] = {}  # id -> name
        self._messages: dict[str, list[Message]] = {}  # channel id -> roots and replies, by ts
        self._usergroups: dict[str, list[str]] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._latency: dict[str, float] = {}
        self._channel_rate: tuple[float, int] | None = None
        self._buckets: dict[str, _Bucket] = {}
        self._down: str | None = None  # None, "503" or "refuse"
        self._last_micros = int(start_ts * 1_000_000) if start_ts is not None else 0
        self._deterministic = start_ts is not None
        self._view_seq = 0
        self._listener = HTTPListener(host, "slack-standin")
        #: the Socket Mode endpoint ``apps.connections.open`` hands out (bot/sim/socket_mode.py
        #: sets it when it starts); without one the method answers ``not_allowed_token_type``
        self.socket_mode: SocketModeEndpoint | None = None
        self.add_channel(*DEFAULT_CHANNEL)

    # -- workspace state -------------------------------------------------------------------------
    def add_channel(self, name: str, channel_id: str) -> None:
        """Register a channel so it can be addressed by ID, ``name`` or ``#name``."""
        with self._lock:
            self._channels[channel_id] = name.lstrip("#")
            self._messages.setdefault(channel_id, [])

    def add_usergroup(self, usergroup_id: str, users: Iterable[str]) -> None:
        """A user group (``S...``) for ``usergroups.users.list``, e.g. the on-call rota."""
        with self._lock:
            self._usergroups[usergroup_id] = list(users)

    def channel_id(self, channel: str) -> str | None:
        """Resolve an ID, ``name`` or ``#name`` the way chat.postMessage does; ``U``/``W``
        user IDs open a DM (``D...``) as posting to a user ID does in Slack."""
        with self._lock:
            if channel in self._channels:
                return channel
            name = channel.lstrip("#")
            for cid, cname in self._channels.items():
                if cname == name:
                    return cid
            if channel[:1] in ("U", "W") and channel[1:].isalnum() and channel.isupper():
                dm = "D" + channel[1:]
                self._channels.setdefault(dm, f"@{channel}")
                self._messages.setdefault(dm, [])
                return dm
            return None

    def channel_name(self, channel_id: str) -> str:
        """A channel's name (without `#`), or the id itself when the stand-in has none."""
        with self._lock:
            return self._channels.get(channel_id, channel_id)

    def response_url(
        self,
        name: str,
        channel: str | None = None,
        user: str | None = None,
        max_uses: int = RESPONSE_URL_MAX_USES,
    ) -> str:
        """A URL on the stand-in that accepts POSTs like a slash command's ``response_url``.

        With ``channel`` (and ``user`` for ephemeral replies) the posts also show up in the
        transcript where Slack would show them."""
        with self._lock:
            self._response_urls[name] = _ResponseUrl(name, channel, user, max_uses)
        return f"http://{self.host}:{self.port}/response/{name}"

    def app_answered(self, name: str, body: JSON) -> None:
        """The app's HTTP answer to the request that carried response_url `name` (a slash
        command's ack body): Slack shows it where it would show a post to that URL, without
        spending one of the URL's uses, and `responses` does not list it."""
        with self._lock:
            url = self._response_urls[name]
            if url.channel is not None and (body.get("text") or body.get("blocks")):
                self._deliver_response(url, ResponsePost(name, body, time.time()))

    def responses(self, name: str | None = None) -> list[ResponsePost]:
        """Posts received on one response_url (or all of them, in order)."""
        with self._lock:
            urls = [self._response_urls[name]] if name else list(self._response_urls.values())
            posts = [p for u in urls for p in u.posts]
        return sorted(posts, key=lambda p: p.at)

    # -- assertions ----------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def clear(self) -> None:
        """Forget recorded calls (messages and channels stay)."""
        with self._lock:
            self.calls.clear()

    def messages(self, channel: str | None = None) -> list[Message]:
        """Every stored message (roots and replies) in posting order."""
        with self._lock:
            cids = [self._resolve_or_raise(channel)] if channel else list(self._messages)
            out = [m for cid in cids for m in self._messages[cid]]
        return sorted(out, key=lambda m: _ts_key(m.ts))

    def channel_history(self, channel: str) -> list[Message]:
        """Root messages of a channel, oldest first, each with ``replies`` (like Slack shows);
        replies with an unknown ``thread_ts`` and broadcast replies are listed as roots too."""
        with self._lock:
            cid = self._resolve_or_raise(channel)
            return [
                m
                for m in self._messages[cid]
                if m.thread_ts is None or m.unknown_thread or m.reply_broadcast
            ]

    # -- failure injection ---------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        error: str | None = None,
        *,
        effect: bool = False,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (``"*"`` for any, ``"response_url"``)
        fail: 429 with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}`` as Slack
        sends it, 500/503 like an outage, or ``status=200, error="..."`` for an ``ok: false``.

        With ``effect=True`` the call takes effect first (the message is stored) and only the
        answer is the failure: Slack's own docs say of ``internal_error``/``fatal_error`` "it's
        possible some aspect of the operation succeeded", and a proxy's 502/504 after the
        backend committed looks the same. A client that re-sends on 5xx posts twice."""
        with self._lock:
            self._failures.setdefault(method, []).append(
                _Failure(status, retry_after if status == 429 else None, error, count, effect)
            )

    def set_latency(self, method: str, seconds: float) -> None:
        """Delay every answer of ``method`` (``"*"`` for all) by ``seconds``. The call takes
        effect at once and only the answer is late, as with a slow Slack: a client that times
        out and retries posts twice, which is what a test of that path needs to see."""
        with self._lock:
            self._latency[method] = seconds

    def clear_latency(self) -> None:
        with self._lock:
            self._latency.clear()

    def enforce_channel_rate(self, per_second: float = 1.0, burst: int = 1) -> None:
        """chat.postMessage "generally allows posting one message per second per channel"
        (https://api.slack.com/docs/rate-limits): a token bucket per channel; over it the post
        gets 429 with ``Retry-After`` (whole seconds, at least 1)."""
        with self._lock:
            self._channel_rate = (per_second, burst)
            self._buckets.clear()

    def stop_channel_rate(self) -> None:
        with self._lock:
            self._channel_rate = None

    def down(self, refuse: bool = False) -> None:
        """Simulate an outage: every request gets 503, or with ``refuse`` every open
        connection is cut (a client's pooled keep-alive connection too) and the port stops
        listening (connection refused) while staying reserved, until ``up()`` serves again
        on the same port."""
        if refuse:
            self._listener.refuse()
            self._down = "refuse"
        else:
            self._down = "503"

    def up(self) -> None:
        was_refusing = self._down == "refuse"
        self._down = None
        if was_refusing and not self._listener.serving:
            self._open_server()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SlackStandIn:
        if self._listener.serving or self._listener.refusing:
            raise RuntimeError("already started")
        self._open_server()
        return self

    def stop(self) -> None:
        """Stop serving, cut every open connection (keep-alive ones included) and release
        the port; a later ``start()`` binds the same port again."""
        self._listener.close()
        self._down = None

    @property
    def running(self) -> bool:
        return self._listener.serving

    @property
    def port(self) -> int:
        """The bound port (kept across down(refuse=True)/up(), which reopen it)."""
        if not self._port:
            raise RuntimeError("not started")
        return self._port

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``WebClient``: it must end with ``/api/``."""
        return f"{self.url}/api/"

    def _open_server(self) -> None:
        """Serve on ``_port`` (0 at first: a free one), or on the port reserved by
        ``down(refuse=True)``."""
        handler = type("SlackHandler", (_Handler,), {"standin": self})
        self._port = self._listener.serve(handler, self._port)

    # -- human views ---------------------------------------------------------------------------
    def render_transcript(self, channel: str | None = None) -> str:
        """The channel(s) as a person reads them: each root message in its current state
        ("(edited)" if chat.update changed it), thread replies indented under it, ephemeral
        messages marked with who sees them. Block Kit is rendered to text: section text and
        fields, context elements, headers, code blocks kept as ``` fences, buttons as
        ``[Label]``."""
        with self._lock:
            cids = [self._resolve_or_raise(channel)] if channel else list(self._messages)
            out: list[str] = []
            for cid in cids:
                roots = self.channel_history(cid)
                ephemerals = [e for e in self.ephemerals if e.channel == cid]
                if not roots and not ephemerals and channel is None:
                    continue
                name = self._channels.get(cid, cid)
                label = name if name.startswith("@") else f"#{name}"
                out.append(f"{label} ({cid})")
                items: list[tuple[tuple[int, int], list[str]]] = []
                for m in roots:
                    items.append((_ts_key(m.ts), self._render_message(m, indent="  ")))
                for e in ephemerals:
                    head = f"  {_clock(e.message_ts)} {self.bot_user} (only visible to {e.user})"
                    body = _indent(render_blocks(e.blocks) if e.blocks else e.text, "    ")
                    items.append((_ts_key(e.message_ts), [head, *body]))
                for _, lines in sorted(items, key=lambda i: i[0]):
                    out.extend(lines)
                if not items:
                    out.append("  (no messages)")
                out.append("")
            for url in self._response_urls.values():
                if url.channel is not None or not url.posts:
                    continue
                out.append(f"response_url {url.name}")
                for post in url.posts:
                    flags = [post.response_type]
                    if post.replace_original:
                        flags.append("replace_original")
                    if post.delete_original:
                        flags.append("delete_original")
                    out.append(f"  ({', '.join(flags)})")
                    blocks = post.body.get("blocks") or []
                    text = render_blocks(blocks) if blocks else str(post.body.get("text", ""))
                    out.extend(_indent(text, "    "))
                out.append("")
        return "\n".join(out).rstrip() + "\n"

    def _render_message(self, m: Message, indent: str) -> list[str]:
        flags = []
        if m.edited:
            flags.append("(edited)")
        if m.unknown_thread:
            flags.append(f"(reply to unknown thread {m.thread_ts})")
        elif m.reply_broadcast and m.thread_ts:
            flags.append("(thread reply, also sent to the channel)")
        head = " ".join([f"{indent}{_clock(m.ts)} {self.bot_user}", *flags])
        lines = [head, *_indent(render_blocks(m.blocks) if m.blocks else m.text, indent + "  ")]
        for reply in m.replies:
            sub = self._render_message(reply, indent + "    ")
            sub[0] = sub[0].replace(indent + "    ", indent + "  ↳ ", 1)
            lines.extend(sub)
        return lines

    def save_blocks(self, path: Path | str) -> Path:
        """Write every channel's messages (current blocks, revisions, replies) as JSON, e.g.
        to paste into Block Kit Builder."""
        with self._lock:
            data = {
                "channels": [
                    {
                        "id": cid,
                        "name": self._channels.get(cid, cid),
                        "messages": [m.to_json() for m in self.channel_history(cid)],
                    }
                    for cid in self._messages
                ],
                "ephemeral": [
                    {"channel": e.channel, "user": e.user, "text": e.text, "blocks": e.blocks}
                    for e in self.ephemerals
                ],
                "views": self.views,
            }
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return out

    # -- request handling (called by the handler thread) ----------------------------------------
    def _next_ts(self) -> str:
        with self._lock:
            step = 100 if self._deterministic else 1
            now = 0 if self._deterministic else int(time.time() * 1_000_000)
            self._last_micros = max(now, self._last_micros + step)
            micros = self._last_micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_or_raise(self, channel: str) -> str:
        cid = self.channel_id(channel)
        if cid is None:
            raise KeyError(f"unknown channel {channel!r}")
        return cid

    def _record(self, call: SlackCall) -> None:
        with self._lock:
            self.calls.append(call)
        for observer in list(SlackStandIn.observers):
            observer(call)

    def _latency_for(self, method: str) -> float:
        with self._lock:
            return self._latency.get(method, 0.0) + self._latency.get("*", 0.0)

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            for key in (method, "*"):
                queue = self._failures.get(key) or []
                if queue:
                    failure = queue[0]
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        queue.pop(0)
                    return failure
        return None

    def _channel_retry_after(self, cid: str) -> int | None:
        """Take a token from the channel's bucket; seconds to wait if there is none."""
        with self._lock:
            if self._channel_rate is None:
                return None
            rate, burst = self._channel_rate
            now = time.monotonic()
            bucket = self._buckets.setdefault(cid, _Bucket(float(burst), now))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    def _dispatch(self, method: str, params: JSON, token: str | None) -> JSON:
        impl = _METHODS.get(method)
        if impl is None and method != "apps.connections.open":
            raise SlackCallError("unknown_method")
        if token is None:
            raise SlackCallError("not_authed")
        if impl is None:  # the one method that takes the app-level token
            return self._apps_connections_open(token)
        if token != self.token:
            raise SlackCallError("invalid_auth")
        return impl(self, params)

    def _apps_connections_open(self, token: str) -> JSON:
        """Socket Mode's URL, for the app-level token only (a bot token is the wrong type,
        https://docs.slack.dev/reference/methods/apps.connections.open)."""
        socket_mode = self.socket_mode
        if token == self.token or not token.startswith("xapp-"):
            raise SlackCallError("not_allowed_token_type")
        if socket_mode is None or token != socket_mode.app_token:
            raise SlackCallError("invalid_auth")
        return {"ok": True, "url": socket_mode.issue_url()}

    # -- methods ---------------------------------------------------------------------------------
    def _auth_test(self, params: JSON) -> JSON:
        return {
            "ok": True,
            "url": f"https://{self.team.lower().replace(' ', '-')}.slack.com/",
            "team": self.team,
            "user": self.bot_user,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _channel_param(self, params: JSON) -> str:
        channel = params.get("channel")
        cid = self.channel_id(str(channel)) if channel else None
        if cid is None:
            raise SlackCallError("channel_not_found")
        return cid

    def _chat_post_message(self, params: JSON) -> JSON:
        cid = self._channel_param(params)
        text, blocks = _message_content(params, require=True)
        retry_after = self._channel_retry_after(cid)
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
            raise SlackCallError("ratelimited", status=429, headers=headers)
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        ts = self._next_ts()
        rest = {
            k: v
            for k, v in params.items()
            if k not in ("channel", "text", "blocks", "thread_ts", "reply_broadcast", "token")
        }
        msg = Message(
            channel=cid,
            ts=ts,
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            thread_ts=thread_ts,
            reply_broadcast=_truthy(params.get("reply_broadcast")),
            params=rest,
            original=Revision(text, blocks, time.time()),
            metadata=_message_metadata(params.get("metadata")),
        )
        with self._lock:
            if thread_ts is not None:
                parent = self._find(cid, thread_ts)
                if parent is None:
                    msg.unknown_thread = True  # Slack accepts it; the reply is invisible
                else:
                    # Replying to a reply lands in the same thread (Slack: "use its parent").
                    root = self._find(cid, parent.thread_ts) if parent.thread_ts else parent
                    (root or parent).replies.append(msg)
                    msg.thread_ts = (root or parent).ts
            self._messages[cid].append(msg)
        return {
            "ok": True,
            "channel": cid,
            "ts": ts,
            "message": msg.to_api(self.team_id, self.bot_id, self.app_id),
        }

    def _find(self, cid: str, ts: str) -> Message | None:
        with self._lock:
            for m in self._messages.get(cid, []):
                if m.ts == ts:
                    return m
        return None

    def _chat_get_permalink(self, params: JSON) -> JSON:
        """https://docs.slack.dev/reference/methods/chat.getPermalink: `channel` and
        `message_ts` → `{"channel", "permalink"}` on the workspace's host (a reply's link
        carries `thread_ts` and `cid`, as Slack's do); `message_not_found` otherwise."""
        cid = self._channel_param(params)
        ts = str(params.get("message_ts") or "")
        message = self._find(cid, ts)  # roots and replies alike
        if message is None:
            raise SlackCallError("message_not_found")
        host = f"https://{self.team.lower().replace(' ', '-')}.slack.com"
        link = f"{host}/archives/{cid}/p{ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != ts:
            link += f"?thread_ts={message.thread_ts}&cid={cid}"
        return {"ok": True, "channel": cid, "permalink": link}

    def _chat_update(self, params: JSON) -> JSON:
        cid = self._channel_param(params)
        ts = str(params.get("ts") or "")
        with self._lock:
            msg = self._find(cid, ts)
            if msg is None:
                raise SlackCallError("message_not_found")
            # chat.update keeps what is not sent: "If you don't include this field, the
            # message's previous blocks will be retained" (and likewise text).
            text = str(params["text"]) if "text" in params else msg.text
            merged = dict(params, text=text)
            if "blocks" not in params:
                merged["blocks"] = msg.blocks
            text, blocks = _message_content(merged, require=True)
            msg.text, msg.blocks = text, blocks
            msg.edits.append(Revision(text, blocks, time.time()))
            return {
                "ok": True,
                "channel": cid,
                "ts": msg.ts,
                "text": msg.text,
                "message": msg.to_api(self.team_id, self.bot_id, self.app_id),
            }

    def _chat_post_ephemeral(self, params: JSON) -> JSON:
        cid = self._channel_param(params)
        user = params.get("user")
        if not user:
            raise SlackCallError("user_not_in_channel")
        text, blocks = _message_content(params, require=True)
        ts = self._next_ts()
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        with self._lock:
            self.ephemerals.append(Ephemeral(cid, str(user), text, blocks, ts, thread_ts))
        return {"ok": True, "message_ts": ts}

    def _views_open(self, params: JSON) -> JSON:
        if not params.get("trigger_id"):
            raise SlackCallError("invalid_arguments", ["missing required field: trigger_id"])
        view = params.get("view")
        if not isinstance(view, dict):
            raise SlackCallError("invalid_arguments", ["missing required field: view"])
        blocks = view.get("blocks") or []
        _validate_blocks(blocks, MAX_VIEW_BLOCKS, pointer="/view/blocks")
        with self._lock:
            self._view_seq += 1
            view_id = f"V{self._view_seq:09d}"
            stored: JSON = {
                "id": view_id,
                "team_id": self.team_id,
                "type": view.get("type", "modal"),
                "blocks": blocks,
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "state": {"values": {}},
                "hash": f"{int(time.time())}.{view_id.lower()}",
                "title": view.get("title"),
                "close": view.get("close"),
                "submit": view.get("submit"),
                "clear_on_close": bool(view.get("clear_on_close", False)),
                "notify_on_close": bool(view.get("notify_on_close", False)),
                "external_id": view.get("external_id", ""),
                "root_view_id": view_id,
                "previous_view_id": None,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
            }
            self.views.append(dict(stored, trigger_id=params["trigger_id"]))
        return {"ok": True, "view": stored}

    def _usergroups_users_list(self, params: JSON) -> JSON:
        group = str(params.get("usergroup") or "")
        with self._lock:
            if group not in self._usergroups:
                raise SlackCallError("no_such_subteam")
            return {"ok": True, "users": list(self._usergroups[group])}

    def _conversations_info(self, params: JSON) -> JSON:
        cid = self._channel_param(params)
        name = self._channels[cid]
        is_im = cid.startswith("D")
        return {
            "ok": True,
            "channel": {
                "id": cid,
                "name": None if is_im else name,
                "is_channel": not is_im,
                "is_group": False,
                "is_im": is_im,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
                "created": 1700000000,
                "creator": self.bot_user_id,
                "context_team_id": self.team_id,
            },
        }

    def _response_post(self, name: str, body: JSON) -> tuple[int, str]:
        """Slack answers response_url POSTs with a plain-text body: ``ok`` or an error word."""
        with self._lock:
            url = self._response_urls.get(name)
            if url is None:
                return 404, "no_service"
            if len(url.posts) >= url.max_uses:
                return 404, "used_url"
            blocks = body.get("blocks")
            if not body.get("text") and not blocks and not body.get("delete_original"):
                return 400, "no_text"
            if blocks is not None:
                try:
                    _validate_blocks(blocks, MAX_MESSAGE_BLOCKS)
                except SlackCallError as exc:
                    return 400, exc.error
            post = ResponsePost(name, body, time.time())
            url.posts.append(post)
            if url.channel is not None:
                self._deliver_response(url, post)
        return 200, "ok"

    def _deliver_response(self, url: _ResponseUrl, post: ResponsePost) -> None:
        cid = self._resolve_or_raise(str(url.channel))
        text = str(post.body.get("text") or "")
        blocks = list(post.body.get("blocks") or [])
        if post.response_type == "in_channel":
            ts = self._next_ts()
            original = Revision(text, blocks, post.at)
            msg = Message(cid, ts, text, blocks, self.bot_user_id, original=original)
            self._messages[cid].append(msg)
        else:
            self.ephemerals.append(Ephemeral(cid, url.user or "?", text, blocks, self._next_ts()))


    # -- reading history ---------------------------------------------------------------------
    def _history_message(self, m: Message, include_metadata: bool) -> JSON:
        """A message as conversations.history / conversations.replies list it: a thread
        parent carries ``thread_ts`` (its own ts), ``reply_count``, ``latest_reply``;
        ``metadata`` only when asked for with ``include_all_metadata``."""
        out = m.to_api(self.team_id, self.bot_id, self.app_id)
        if m.replies:
            out["thread_ts"] = m.ts
            out["reply_count"] = len(m.replies)
            out["reply_users_count"] = len({r.user for r in m.replies})
            out["reply_users"] = sorted({r.user for r in m.replies})
            out["latest_reply"] = m.replies[-1].ts
        if include_metadata and m.metadata is not None:
            out["metadata"] = m.metadata
        return out

    def _conversations_history(self, params: JSON) -> JSON:
        """Channel messages (not thread replies, except broadcast ones), newest first,
        within ``oldest``/``latest`` (exclusive unless ``inclusive``), ``limit`` per page
        (default 100, at most 999) and ``response_metadata.next_cursor`` for the next, older
        page. https://docs.slack.dev/reference/methods/conversations.history"""
        cid = self._channel_param(params)
        with self._lock:
            roots = [
                m
                for m in self._messages[cid]
                if m.thread_ts is None or m.unknown_thread or m.reply_broadcast
            ]
            window = _in_window(roots, params)
            window.sort(key=lambda m: _ts_micros(m.ts), reverse=True)
            page, has_more, cursor = _page(window, params, default_limit=100)
            include = _truthy(params.get("include_all_metadata"))
            return {
                "ok": True,
                "messages": [self._history_message(m, include) for m in page],
                "has_more": has_more,
                "pin_count": 0,
                "response_metadata": {"next_cursor": cursor},
            }

    def _conversations_replies(self, params: JSON) -> JSON:
        """A thread: the parent then its replies, oldest first, with the same window and
        cursor arguments as history (default ``limit`` 1000). ``ts`` may name the parent or any
        reply; an unknown ``ts`` is ``thread_not_found``.
        https://docs.slack.dev/reference/methods/conversations.replies"""
        cid = self._channel_param(params)
        ts = str(params.get("ts") or "")
        if not ts:
            raise SlackCallError("invalid_arguments", ["missing required field: ts"])
        with self._lock:
            found = self._find(cid, ts)
            if found is None or found.unknown_thread:
                raise SlackCallError("thread_not_found")
            parent = self._find(cid, found.thread_ts) if found.thread_ts else found
            if parent is None:
                raise SlackCallError("thread_not_found")
            window = _in_window([parent, *parent.replies], params)
            window.sort(key=lambda m: _ts_micros(m.ts))
            page, has_more, cursor = _page(window, params, default_limit=1000)
            include = _truthy(params.get("include_all_metadata"))
            return {
                "ok": True,
                "messages": [self._history_message(m, include) for m in page],
                "has_more": has_more,
                "response_metadata": {"next_cursor": cursor},
            }


    def _conversations_list(self, params: JSON) -> JSON:
        """Channels by ``types`` (default ``public_channel``; every channel here is public
        unless its ID starts with ``G``), ``limit`` (default 100) and cursor pages; what the bot
        uses to learn a channel's ID from its name.
        https://docs.slack.dev/reference/methods/conversations.list"""
        types = set(str(params.get("types") or "public_channel").split(","))
        with self._lock:
            channels = [
                {
                    "id": cid,
                    "name": name,
                    "is_channel": not cid.startswith("G"),
                    "is_group": cid.startswith("G"),
                    "is_im": False,
                    "is_private": cid.startswith("G"),
                    "is_archived": False,
                    "is_member": True,
                    "context_team_id": self.team_id,
                }
                for cid, name in self._channels.items()
                if not cid.startswith("D")
                and ("private_channel" if cid.startswith("G") else "public_channel") in types
            ]
        page, _, cursor = _page(channels, params, default_limit=100)
        return {"ok": True, "channels": page, "response_metadata": {"next_cursor": cursor}}


def _message_metadata(value: Any) -> JSON | None:
    """chat.postMessage ``metadata``: an object with a string ``event_type`` and an object
    ``event_payload`` (https://docs.slack.dev/messaging/message-metadata); anything else is
    ``invalid_metadata_format``."""
    if value is None or value == "":
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not isinstance(value.get("event_payload"), dict)
    ):
        raise SlackCallError("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": value["event_payload"]}


def _ts_micros(ts: Any, error: str = "invalid_ts_oldest") -> int:
    """A Slack timestamp (``"1700000000.123456"``, or any decimal number of seconds as
    ``oldest``/``latest`` accept) in microseconds."""
    try:
        return int(Decimal(str(ts)) * 1_000_000)
    except (InvalidOperation, ValueError):
        raise SlackCallError(error) from None


def _in_window(messages: Iterable[Message], params: JSON) -> list[Message]:
    """``oldest``/``latest`` bounds, exclusive unless ``inclusive`` (Slack's default)."""
    oldest = _ts_micros(params["oldest"]) if params.get("oldest") else None
    latest = _ts_micros(params["latest"], "invalid_ts_latest") if params.get("latest") else None
    inclusive = _truthy(params.get("inclusive"))
    out = []
    for m in messages:
        t = _ts_micros(m.ts)
        if oldest is not None and (t < oldest or (t == oldest and not inclusive)):
            continue
        if latest is not None and (t > latest or (t == latest and not inclusive)):
            continue
        out.append(m)
    return out


def _page(items: list[_T], params: JSON, default_limit: int) -> tuple[list[_T], bool, str]:
    """One page by ``limit`` and an opaque ``cursor`` (base64 of the offset, as Slack's
    cursors are opaque base64 strings); ``invalid_cursor`` for one we did not hand out."""
    try:
        limit = int(params.get("limit") or default_limit)
    except (TypeError, ValueError):
        raise SlackCallError("invalid_limit") from None
    limit = max(1, min(limit, 1000))
    start = 0
    if params.get("cursor"):
        try:
            kind, _, offset = base64.b64decode(str(params["cursor"])).decode().partition(":")
            start = int(offset)
        except (ValueError, UnicodeDecodeError):
            raise SlackCallError("invalid_cursor") from None
        if kind != "offset" or start < 0:
            raise SlackCallError("invalid_cursor")
    page = items[start : start + limit]
    has_more = start + limit < len(items)
    cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if has_more else ""
    return page, has_more, cursor


_METHODS: dict[str, Callable[[SlackStandIn, JSON], JSON]] = {
    "auth.test": SlackStandIn._auth_test,
    "chat.postMessage": SlackStandIn._chat_post_message,
    "chat.update": SlackStandIn._chat_update,
    "chat.getPermalink": SlackStandIn._chat_get_permalink,
    "chat.postEphemeral": SlackStandIn._chat_post_ephemeral,
    "views.open": SlackStandIn._views_open,
    "usergroups.users.list": SlackStandIn._usergroups_users_list,
    "conversations.info": SlackStandIn._conversations_info,
    "conversations.history": SlackStandIn._conversations_history,
    "conversations.replies": SlackStandIn._conversations_replies,
    "conversations.list": SlackStandIn._conversations_list,
}


# -- validation --------------------------------------------------------------------------------
def _message_content(params: JSON, require: bool) -> tuple[str, list[JSON]]:
    """Text and blocks of a chat.* call, validated as Slack does."""
    text = params.get("text")
    text = "" if text is None else str(text)
    blocks = params.get("blocks")
    if blocks is None or blocks == "":
        blocks = []
    _validate_blocks(blocks, MAX_MESSAGE_BLOCKS)
    if require and not text.strip() and not blocks and not params.get("attachments"):
        raise SlackCallError("no_text")
    if len(text) > MAX_MESSAGE_TEXT:
        raise SlackCallError("msg_too_long")
    return text, list(blocks)


def _text_of(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return str(obj["text"])
    return None


def _validate_blocks(blocks: Any, max_blocks: int, pointer: str = "/blocks") -> None:
    """The Block Kit limits above; errors carry Slack's ``[json-pointer:...]`` detail."""
    if not isinstance(blocks, list):
        raise SlackCallError("invalid_blocks_format")
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(_too_many(max_blocks, pointer))
    seen_ids: set[str] = set()
    for i, block in enumerate(blocks):
        here = f"{pointer}/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"missing required field: type [json-pointer:{here}]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if len(block_id) > MAX_BLOCK_ID:
                problems.append(_too_long(MAX_BLOCK_ID, f"{here}/block_id"))
            if block_id in seen_ids:
                problems.append(f"duplicate block_id [json-pointer:{here}/block_id]")
            seen_ids.add(block_id)
        kind = block["type"]
        if kind == "section":
            text, fields = _text_of(block.get("text")), block.get("fields")
            if text is None and not fields:
                problems.append(f"must provide either text or fields [json-pointer:{here}]")
            if text is not None and len(text) > MAX_SECTION_TEXT:
                problems.append(_too_long(MAX_SECTION_TEXT, f"{here}/text/text"))
            if isinstance(fields, list):
                if len(fields) > MAX_SECTION_FIELDS:
                    problems.append(_too_many(MAX_SECTION_FIELDS, f"{here}/fields"))
                for j, f in enumerate(fields):
                    ftext = _text_of(f)
                    if ftext is not None and len(ftext) > MAX_FIELD_TEXT:
                        problems.append(_too_long(MAX_FIELD_TEXT, f"{here}/fields/{j}/text"))
            _check_element(block.get("accessory"), f"{here}/accessory", problems)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                problems.append(f"missing required field: elements [json-pointer:{here}]")
                continue
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                problems.append(_too_many(MAX_CONTEXT_ELEMENTS, f"{here}/elements"))
            for j, el in enumerate(elements):
                etext = _text_of(el)
                if etext is not None and len(etext) > MAX_TEXT_OBJECT:
                    problems.append(_too_long(MAX_TEXT_OBJECT, f"{here}/elements/{j}/text"))
        elif kind == "header":
            htext = _text_of(block.get("text"))
            if htext is None:
                problems.append(f"missing required field: text [json-pointer:{here}]")
            elif len(htext) > MAX_HEADER_TEXT:
                problems.append(_too_long(MAX_HEADER_TEXT, f"{here}/text/text"))
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                problems.append(f"missing required field: elements [json-pointer:{here}]")
                continue
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                problems.append(_too_many(MAX_ACTIONS_ELEMENTS, f"{here}/elements"))
            for j, el in enumerate(elements):
                _check_element(el, f"{here}/elements/{j}", problems)
    if problems:
        raise SlackCallError("invalid_blocks", problems)


def _check_element(element: Any, here: str, problems: list[str]) -> None:
    if isinstance(element, dict) and element.get("type") == "button":
        label = _text_of(element.get("text"))
        if label is None:
            problems.append(f"missing required field: text [json-pointer:{here}]")
        elif len(label) > MAX_BUTTON_TEXT:
            problems.append(_too_long(MAX_BUTTON_TEXT, f"{here}/text/text"))


def _too_long(limit: int, pointer: str) -> str:
    return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"


def _too_many(limit: int, pointer: str) -> str:
    return f"must provide an array of no more than {limit} items [json-pointer:{pointer}]"


# -- rendering ---------------------------------------------------------------------------------
def _clock(ts: str) -> str:
    secs, _ = _ts_key(ts)
    return time.strftime("%H:%M:%S", time.gmtime(secs))


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line if line else prefix.rstrip() for line in text.splitlines()] or [prefix]


def _element_text(el: Any) -> str:
    if not isinstance(el, dict):
        return ""
    kind = el.get("type")
    if kind in ("mrkdwn", "plain_text"):
        return str(el.get("text", ""))
    if kind == "image":
        return f"[image: {el.get('alt_text', '')}]"
    if kind == "button":
        return f"[{_text_of(el.get('text')) or ''}]"
    if kind == "overflow":
        return "[⋯]"
    if "select" in str(kind):
        placeholder = _text_of(el.get("placeholder")) or "Select"
        return f"[{placeholder} ▾]"
    if kind == "datepicker":
        return "[date ▾]"
    return f"[{kind}]"


def _rich_text(elements: Any) -> str:
    """Flatten rich_text elements (sections, lists, preformatted) to plain text."""
    parts: list[str] = []
    for el in elements if isinstance(elements, list) else []:
        if not isinstance(el, dict):
            continue
        kind = el.get("type")
        if kind == "text":
            parts.append(str(el.get("text", "")))
        elif kind == "link":
            parts.append(str(el.get("text") or el.get("url", "")))
        elif kind == "user":
            parts.append(f"<@{el.get('user_id')}>")
        elif kind == "emoji":
            parts.append(f":{el.get('name')}:")
        elif kind == "rich_text_preformatted":
            parts.append("```\n" + _rich_text(el.get("elements")) + "\n```\n")
        elif kind == "rich_text_list":
            for item in el.get("elements") or []:
                inner = item.get("elements") if isinstance(item, dict) else []
                parts.append("• " + _rich_text(inner) + "\n")
        elif kind in ("rich_text_section", "rich_text_quote"):
            body = _rich_text(el.get("elements"))
            parts.append(("> " + body if kind == "rich_text_quote" else body) + "\n")
    return "".join(parts)


def render_blocks(blocks: Iterable[JSON]) -> str:
    """Block Kit as the text a person reads in the channel (buttons as ``[Label]``)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            text = _text_of(block.get("text"))
            accessory = block.get("accessory")
            if text is not None:
                lines.extend(text.splitlines() or [""])
            for f in block.get("fields") or []:
                lines.extend((_text_of(f) or "").splitlines())
            if accessory:
                lines.append(_element_text(accessory))
        elif kind == "header":
            lines.append(f"*{_text_of(block.get('text')) or ''}*")
        elif kind == "context":
            lines.append("  ·  ".join(_element_text(e) for e in block.get("elements") or []))
        elif kind == "actions":
            lines.append(" ".join(_element_text(e) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("────────")
        elif kind in ("markdown",):
            lines.extend(str(block.get("text", "")).splitlines())
        elif kind == "rich_text":
            lines.extend(_rich_text(block.get("elements")).rstrip("\n").splitlines())
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            label = _text_of(block.get("label")) or ""
            lines.append(f"{label}: {_element_text(block.get('element'))}")
        else:
            lines.append(f"[{kind} block]")
    return "\n".join(lines)


# -- HTTP ----------------------------------------------------------------------------------------
def _parse_body(content_type: str, raw: bytes) -> tuple[JSON, bool]:
    """Arguments from a JSON or form body; ``True`` when it was JSON."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        data = json.loads(raw.decode("utf-8") or "{}")
        if not isinstance(data, dict):
            raise SlackCallError("invalid_json")
        return data, True
    if ctype == "multipart/form-data":
        raise SlackCallError("invalid_form_data")  # files.* are not part of the stand-in
    text = raw.decode("utf-8")
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}, False


def _decode_json_args(params: JSON) -> None:
    """In a form body, ``blocks``/``view``/... are JSON strings (Slack: "presented as a
    URL-encoded string"); parse them so methods see the same values as from a JSON body."""
    for key in _JSON_ARGS:
        value = params.get(key)
        if isinstance(value, str) and value:
            try:
                params[key] = json.loads(value)
            except ValueError:
                error = "invalid_blocks_format" if key == "blocks" else "invalid_arguments"
                raise SlackCallError(error) from None


class _Handler(BaseHTTPRequestHandler):
    standin: SlackStandIn  # set on the per-server subclass
    disable_nagle_algorithm = True  # small JSON answers would otherwise wait ~40 ms for ACKs
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .calls
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        at = time.time()
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        standin = self.standin
        headers = {
            k: v
            for k, v in (
                ("Content-Type", self.headers.get("Content-Type")),
                ("User-Agent", self.headers.get("User-Agent")),
                ("Authorization", _mask(self.headers.get("Authorization"))),
            )
            if v is not None
        }
        if parts.path.startswith("/response/"):
            self._handle_response_url(unquote(parts.path[len("/response/") :]), raw, headers, at)
            return
        if not parts.path.startswith("/api/"):
            self._send(404, b"not found", "text/plain")
            return
        method = unquote(parts.path[len("/api/") :])
        params: JSON = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        token: str | None = None
        status: int = 200
        body: JSON = {}
        extra: dict[str, str] = {}
        try:
            is_json = False
            if raw:
                body_params, is_json = _parse_body(self.headers.get("Content-Type") or "", raw)
                params.update(body_params)
            _decode_json_args(params)
            auth = self.headers.get("Authorization") or ""
            if auth.lower().startswith("bearer "):
                token = auth[7:].strip()
            elif not is_json and params.get("token"):
                token = str(params["token"])  # a JSON body must use the header
            params.pop("token", None)
            status, body, extra = self._preflight(
                method, lambda: standin._dispatch(method, params, token)
            )
            if status == 0:
                body = standin._dispatch(method, params, token)
                status = 200
        except SlackCallError as exc:
            status, body, extra = exc.status, exc.body(), exc.headers
        except ValueError:
            status, body = 200, {"ok": False, "error": "invalid_json"}
        delay = standin._latency_for(method)
        if delay:
            time.sleep(delay)
        call = SlackCall(method, params, headers, token, at, status, body, self.command)
        standin._record(call)
        payload = json.dumps(body).encode("utf-8")
        self._send(status, payload, "application/json; charset=utf-8", extra)

    def _preflight(
        self, method: str, apply: Callable[[], JSON] | None = None
    ) -> tuple[int, JSON, dict[str, str]]:
        """Outage and injected failures come before Slack looks at the call (``apply`` runs
        it first for a failure injected with ``effect=True``; never for a 429)."""
        if self.standin._down == "503":
            return 503, {"ok": False, "error": "service_unavailable"}, {}
        failure = self.standin._take_failure(method)
        if failure is None:
            return 0, {}, {}
        if failure.effect and failure.status != 429 and apply is not None:
            apply()  # a SlackCallError here is the answer: the call did not take effect
        if failure.status == 429:
            retry_after = failure.retry_after if failure.retry_after is not None else 1
            body = {"ok": False, "error": failure.error or "ratelimited"}
            return 429, body, {"Retry-After": str(retry_after)}
        defaults = {500: "internal_error", 503: "service_unavailable"}
        default = defaults.get(failure.status, "fatal_error")
        return failure.status, {"ok": False, "error": failure.error or default}, {}

    def _handle_response_url(
        self, name: str, raw: bytes, headers: dict[str, str], at: float
    ) -> None:
        standin = self.standin
        extra: dict[str, str] = {}
        try:
            body = json.loads(raw.decode("utf-8") or "{}")
        except ValueError:
            body = None
        if self.standin._down == "503":
            status, text = 503, "service_unavailable"
        elif (failure := standin._take_failure("response_url")) is not None:
            status = failure.status
            text = failure.error or ("rate_limited" if status == 429 else "internal_error")
            if status == 429:
                extra["Retry-After"] = str(failure.retry_after or 1)
        elif not isinstance(body, dict):
            status, text = 400, "invalid_payload"
        else:
            status, text = standin._response_post(name, body)
        delay = standin._latency_for("response_url")
        if delay:
            time.sleep(delay)
        params = dict(body) if isinstance(body, dict) else {}
        params["response_url"] = name
        call = SlackCall("response_url", params, headers, None, at, status, text, self.command)
        standin._record(call)
        self._send(status, text.encode("utf-8"), "text/html", extra)

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up waiting (a timeout against set_latency): Slack would still
            # have done the work; nothing to tell anyone
            self.close_connection = True


def _mask(auth: str | None) -> str | None:
    """Keep the scheme and a hint of the token, never the whole secret, in recorded headers."""
    if auth is None:
        return None
    scheme, _, value = auth.partition(" ")
    return f"{scheme} {value[:5]}…" if value else scheme
