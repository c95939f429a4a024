"""A local stand-in for Slack's Socket Mode: the websocket side of the Slack stand-in.

Socket Mode is how most teams run the bot (no public ingress), and what breaks there is not
the listeners but the connection: the envelope format, the acks, and the refresh Slack asks
for every few hours. So this is a websocket server speaking Slack's Socket Mode wire format
(https://docs.slack.dev/apis/events-api/using-socket-mode/), with the real ``slack_sdk``
client on the other end:

- ``apps.connections.open`` (served by ``SlackStandIn`` with the app-level ``xapp-`` token)
  hands out ``ws://127.0.0.1:<port>/link/?ticket=...``; a ticket opens one connection.
- On connect: ``{"type": "hello", "num_connections", "debug_info", "connection_info"}``.
- Envelopes: ``{"envelope_id", "type": "slash_commands" | "interactive" | "events_api",
  "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}``; the payloads are
  the ones Slack sends over HTTP (a slash command's form fields as a JSON object, the
  ``block_actions`` payload, the ``event_callback`` envelope).
- Acks ``{"envelope_id", "payload"?}`` are recorded with their arrival time and connection.
- ``refresh()``: ``{"type": "disconnect", "reason": "refresh_requested", "debug_info"}``, then
  the old connection stays OPEN for ``hold_open`` seconds (Slack does not close it at once, and
  does not answer the client's close frame meanwhile) while new envelopes go to the newest
  connection; an envelope sent while no connection is open waits for one.
- ``drop()``: the server cuts the connection without a close frame (a network failure).
- Several apps' connections (one Slack app installed in several clusters): Slack hands each
  envelope to one open connection of its choosing; ``deliver(..., connection=N)`` is that
  choice made by the test (by default, the newest open connection).

aiohttp (already a dependency) serves the websocket: ``autoclose=False`` lets the stand-in
ignore a close frame during the hold, which a library that always answers it could not model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from bot.sim.lifecycle import LoopbackService

if TYPE_CHECKING:
    from bot.sim.slack import SlackStandIn

JSON = dict[str, Any]

DEFAULT_APP_TOKEN = "xapp-1-A0IMGBOT01-1000000000000-standin"
#: Seconds Slack keeps a connection open after asking for its refresh (issue 11: "several").
DEFAULT_HOLD_OPEN = 5.0
_HOST_ID = "applink-standin-1"


@dataclass
class Connection:
    """One websocket as the stand-in saw it."""

    id: int
    opened_at: float
    state: str = "open"  # open | retiring (disconnect sent, held open) | closed
    closed_at: float | None = None
    how_closed: str = ""  # "client", "hold expired", "dropped", "stopped"
    client_close_at: float | None = None  # when the client's close frame arrived
    ws: web.WebSocketResponse | None = field(default=None, repr=False)
    transport: asyncio.Transport | None = field(default=None, repr=False)
    released: asyncio.Event | None = field(default=None, repr=False)


@dataclass
class Ack:
    """An acknowledgement the client sent: ``{"envelope_id", "payload"?}``."""

    envelope_id: str
    payload: JSON | None
    at: float
    connection: int


@dataclass
class Envelope:
    """One delivery: when it was asked for (``created_at``), sent, on which connection."""

    envelope_id: str
    type: str
    payload: JSON
    created_at: float
    sent_at: float | None = None
    connection: int | None = None
    ack: Ack | None = None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from the moment Slack had the request to the ack (what Slack's 3 s limit
        measures); None while unacknowledged."""
        return None if self.ack is None else self.ack.at - self.created_at

    def message(self, accepts_response_payload: bool, retry_attempt: int,
                retry_reason: str) -> JSON:
        out: JSON = {"envelope_id": self.envelope_id, "type": self.type,
                     "payload": self.payload,
                     "accepts_response_payload": accepts_response_payload}
        if self.type == "events_api":
            out["retry_attempt"], out["retry_reason"] = retry_attempt, retry_reason
        return out


def form_fields(body: bytes) -> JSON:
    """A slash command's form body (tests/support builders, Slack's HTTP shape) as the JSON
    object Socket Mode carries in the envelope's ``payload``."""
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def interaction_payload(body: bytes) -> JSON:
    """An interaction's ``payload=<json>`` form body as the JSON object of the envelope."""
    payload = json.loads(form_fields(body)["payload"])
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    return payload


class SocketModeStandIn(LoopbackService):
    """Slack's Socket Mode endpoint on 127.0.0.1. Usage::

        with SlackStandIn() as slack, SocketModeStandIn(slack) as socket_mode:
            # a client with app token socket_mode.app_token and base_url slack.api_url
            envelope = socket_mode.slash_command(form_fields(slash_command(...)))
            assert socket_mode.wait_ack(envelope).at - envelope.created_at < 3
    """

    def __init__(self, slack: SlackStandIn | None = None, app_token: str = DEFAULT_APP_TOKEN,
                 host: str = "127.0.0.1", port: int = 0, *, app_id: str = "A0IMGBOT01",
                 hold_open: float = DEFAULT_HOLD_OPEN) -> None:
        self.slack = slack
        self.app_token = app_token
        self.host, self._port = host, port
        self.app_id = app_id
        self.hold_open = hold_open
        self.connections: list[Connection] = []
        self.envelopes: list[Envelope] = []
        self.acks: list[Ack] = []
        self.unknown_messages: list[str] = []  # text frames that were not acks
        self._tickets: set[str] = set()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SocketModeStandIn:
        if self._loop is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="socket-mode-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Socket Mode stand-in did not start")
        if self.slack is not None:
            self.slack.socket_mode = self
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        server = site._server  # the bound asyncio server: the only place the port is known
        assert isinstance(server, asyncio.Server)
        self._port = int(server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self.slack is not None and self.slack.socket_mode is self:
            self.slack.socket_mode = None

        async def shutdown() -> None:
            for conn in self.connections:
                self._mark_closed(conn, "stopped")
                if conn.transport is not None:
                    conn.transport.abort()
                if conn.released is not None:
                    conn.released.set()
            if self._runner is not None:
                await self._runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    @property
    def port(self) -> int:
        if not self._port or self._loop is None:
            raise RuntimeError("not started")
        return self._port

    # -- apps.connections.open -----------------------------------------------------------------
    def issue_url(self) -> str:
        """A one-use URL, as ``apps.connections.open`` returns."""
        ticket = str(uuid.uuid4())
        with self._cond:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- what a test does ----------------------------------------------------------------------
    def open_connections(self) -> list[Connection]:
        with self._cond:
            return [c for c in self.connections if c.state == "open"]

    def wait_connections(self, count: int, timeout: float = 10.0) -> list[Connection]:
        """Block until ``count`` connections have been opened in all (any state)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= count, timeout):
                raise TimeoutError(f"{len(self.connections)} connection(s), wanted {count}")
            return list(self.connections)

    def slash_command(self, fields: Mapping[str, str], **options: Any) -> Envelope:
        return self.deliver("slash_commands", dict(fields), accepts_response_payload=True,
                            **options)

    def interactive(self, payload: Mapping[str, Any], **options: Any) -> Envelope:
        return self.deliver("interactive", dict(payload), **options)

    def events_api(self, payload: Mapping[str, Any], *, retry_attempt: int = 0,
                   retry_reason: str = "", **options: Any) -> Envelope:
        return self.deliver("events_api", dict(payload), retry_attempt=retry_attempt,
                            retry_reason=retry_reason, **options)

    def deliver(self, type: str, payload: JSON, *, accepts_response_payload: bool = False,
                retry_attempt: int = 0, retry_reason: str = "", wait: float = 15.0,
                connection: int | None = None) -> Envelope:
        """Send an envelope on the newest open connection, or on open connection number
        ``connection``; with none open (a reconnect in progress), wait up to ``wait`` seconds
        for one, as Slack holds the request."""
        envelope = Envelope(str(uuid.uuid4()), type, payload, time.time())

        def chosen() -> Connection | None:
            if connection is None:
                return self._newest_open()
            return next((c for c in self.connections if c.id == connection
                         and c.state == "open" and c.ws is not None), None)

        with self._cond:
            self.envelopes.append(envelope)
            if not self._cond.wait_for(lambda: chosen() is not None, wait):
                raise TimeoutError("no open Socket Mode connection to deliver to")
            conn = chosen()
            assert conn is not None and conn.ws is not None
        message = envelope.message(accepts_response_payload, retry_attempt, retry_reason)
        self._send(conn, message)
        envelope.sent_at, envelope.connection = time.time(), conn.id
        return envelope

    def wait_ack(self, envelope: Envelope, timeout: float = 10.0) -> Ack:
        with self._cond:
            if not self._cond.wait_for(lambda: envelope.ack is not None, timeout):
                raise TimeoutError(f"no ack for envelope {envelope.envelope_id} ({envelope.type})")
            assert envelope.ack is not None
            return envelope.ack

    def refresh(self, hold_open: float | None = None) -> Connection:
        """Ask the newest connection to refresh (``disconnect``/``refresh_requested``); keep it
        open ``hold_open`` seconds (default: the stand-in's), then close it."""
        hold = self.hold_open if hold_open is None else hold_open
        with self._cond:
            conn = self._newest_open()
            if conn is None:
                raise RuntimeError("no open connection to refresh")
            conn.state = "retiring"
            self._cond.notify_all()
        self._send(conn, {"type": "disconnect", "reason": "refresh_requested",
                          "debug_info": {"host": _HOST_ID}})
        loop = self._running_loop()
        loop.call_soon_threadsafe(loop.call_later, hold, self._release, conn)
        return conn

    def drop(self) -> Connection:
        """Cut the newest connection without a close frame (a network failure)."""
        with self._cond:
            conn = self._newest_open()
            if conn is None:
                raise RuntimeError("no open connection to drop")
        self._mark_closed(conn, "dropped")
        loop = self._running_loop()

        def abort() -> None:
            if conn.transport is not None:
                conn.transport.abort()
            if conn.released is not None:
                conn.released.set()

        loop.call_soon_threadsafe(abort)
        return conn

    # -- the server side -----------------------------------------------------------------------
    def _newest_open(self) -> Connection | None:
        for conn in reversed(self.connections):
            if conn.state == "open" and conn.ws is not None:
                return conn
        return None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("not started")
        return self._loop

    def _send(self, conn: Connection, message: JSON) -> None:
        ws = conn.ws
        assert ws is not None
        future = asyncio.run_coroutine_threadsafe(ws.send_str(json.dumps(message)),
                                                  self._running_loop())
        future.result(5)

    def _mark_closed(self, conn: Connection, how: str) -> None:
        with self._cond:
            if conn.state != "closed":
                conn.state, conn.closed_at, conn.how_closed = "closed", time.time(), how
            self._cond.notify_all()

    def _release(self, conn: Connection) -> None:
        """The hold is over: the retiring connection is closed by the server."""
        if conn.released is not None:
            conn.released.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._cond:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return web.Response(status=401, text="invalid or used ticket")
        ws = web.WebSocketResponse(autoclose=False, autoping=True, timeout=1.0, compress=False)
        await ws.prepare(request)
        with self._cond:
            conn = Connection(len(self.connections) + 1, time.time(), ws=ws,
                              transport=request.transport, released=asyncio.Event())
            self.connections.append(conn)
            count = sum(1 for c in self.connections if c.state != "closed")
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": count,
            "debug_info": {"host": _HOST_ID, "build_number": 1,
                           "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id}}))
        with self._cond:
            self._cond.notify_all()  # deliverable only once hello has gone out
        reader = asyncio.ensure_future(self._read(conn, ws))
        released = asyncio.ensure_future(conn.released.wait())  # type: ignore[union-attr]
        await asyncio.wait({reader, released}, return_when=asyncio.FIRST_COMPLETED)
        if released.done() and conn.state == "retiring":
            self._mark_closed(conn, "hold expired")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1000, message=b"refreshed"), 1.0)
        reader.cancel()
        released.cancel()
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()
        self._mark_closed(conn, conn.how_closed or "client")
        return ws

    async def _read(self, conn: Connection, ws: web.WebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                self._record_text(conn, str(msg.data))
            elif msg.type == WSMsgType.CLOSE:
                conn.client_close_at = time.time()
                if conn.state == "retiring":
                    # Slack keeps a refreshed connection until it is done with it; the
                    # client's close frame gets no answer before the hold ends.
                    await conn.released.wait()  # type: ignore[union-attr]
                    return
                self._mark_closed(conn, "client")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)
                return
            elif msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                self._mark_closed(conn, conn.how_closed or "client")
                return

    def _record_text(self, conn: Connection, text: str) -> None:
        at = time.time()
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        with self._cond:
            envelope = next((e for e in self.envelopes if e.envelope_id == envelope_id), None)
            if envelope is None or not isinstance(message, dict):
                self.unknown_messages.append(text[:2000])
                return
            payload = message.get("payload")
            ack = Ack(str(envelope_id), payload if isinstance(payload, dict) else None, at,
                      conn.id)
            self.acks.append(ack)
            if envelope.ack is None:
                envelope.ack = ack
            self._cond.notify_all()


def new_app_token() -> str:
    """An app-level token of Slack's shape, distinct per test."""
    return f"xapp-1-A0IMGBOT01-{secrets.randbelow(10**13):013d}-{secrets.token_hex(16)}"
