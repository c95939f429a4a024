"""Socket Mode for the sync Bolt app: a connection that keeps Slack's 3-second ack across a
refresh, and the same shape checks as `/slack/events`.

Why not slack_bolt's own adapters. Slack asks for a refresh (`disconnect`,
`refresh_requested`) and keeps the old connection open for several seconds; requests then
arrive on the new one. Measured against bot/sim/socket_mode.py (old connection held open 5 s,
a command sent on the new connection as soon as it opens; bench/socket_mode_refresh.py):

- `slack_bolt.adapter.socket_mode` (slack_sdk's built-in client): one thread reads "the current
  session"; closing the old one waits for that reader's 3 s receive timeout, and the new
  connection is not read before that: acks after 3.07-3.08 s, past Slack's limit. After a
  dropped connection it reconnects only at its monitor's next check (every ping interval).
- `slack_bolt.adapter.socket_mode.websocket_client`: closes the old connection first (a close
  frame, then up to 3 s waiting for Slack's answer) and opens the new one only afterwards:
  acks after 3.0-10.0 s.
- the aiohttp and websockets adapters need the async `AsyncApp`, which the bot is not.

This client (slack_sdk's `BaseSocketModeClient`, so its queue, worker pool, `disconnect`
handling and `apps.connections.open` call are slack_sdk's) gives every connection its own reader
thread on websocket-client's `WebSocket`: a new connection is read from the moment it opens, the
old one is closed in the background (close frame, `close_timeout`, then cut), and a connection
that dies (EOF, reset, no frame for three ping intervals) is replaced at once. Measured: acks
in 12-17 ms across the refresh (the README's Socket Mode section has the table).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures.thread import ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Queue
from threading import Lock
from typing import Any

import websocket
from slack_bolt import App
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.errors import SlackClientNotConnectedError
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.interval_runner import IntervalRunner
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient

from bot.slack.inbound import AnsweredAlready, Refused, screen_interaction

log = logging.getLogger(__name__)
#: Seconds between two reconnects (the first after a drop is immediate).
RECONNECT_SPACING = 1.0

#: Several clusters (issue 13): an envelope's payload -> None to run it here, or the ack body
#: (JSON text, "" for a bare ack) when it was routed to another cluster's agent or refused in
#: words. bot/server.py `socket_mode_handler` builds it on bot/chatops/bus/'s routing.
Router = Callable[[dict[str, Any]], str | None]


@dataclass(eq=False)
class _Link:
    """One websocket and the thread reading it."""

    ws: websocket.WebSocket
    number: int
    last_frame: float = field(default_factory=time.monotonic)
    alive: bool = True
    reader: threading.Thread | None = None


class PromptSocketModeClient(BaseSocketModeClient):
    """A Socket Mode client whose connections never wait for each other (see the module)."""

    def __init__(self, app_token: str, web_client: WebClient, *, concurrency: int = 10,
                 ping_interval: float = 10.0, close_timeout: float = 1.0,
                 connect_timeout: float = 10.0, logger: logging.Logger | None = None) -> None:
        self.app_token = app_token
        self.web_client = web_client
        self.logger = logger or log
        self.ping_interval = ping_interval
        self.close_timeout = close_timeout
        self.connect_timeout = connect_timeout
        self.wss_uri = ""
        self.message_queue = Queue()
        self.message_listeners = []
        self.socket_mode_request_listeners = []
        self.closed = False
        self.connect_operation_lock = Lock()
        self.message_workers = ThreadPoolExecutor(max_workers=concurrency,
                                                  thread_name_prefix="socket-mode-worker")
        self.message_processor = IntervalRunner(self.process_messages, 0.001).start()
        self._link: _Link | None = None
        self._links = 0
        self._monitor: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_reconnect = float("-inf")

    # -- BaseSocketModeClient --------------------------------------------------------------------
    def is_connected(self) -> bool:
        link = self._link
        return link is not None and link.alive

    def connect(self) -> None:
        """Open a new connection (the URL from `apps.connections.open`, fetched by
        `connect_to_new_endpoint`), read it at once, then retire the previous one."""
        if not self.wss_uri:
            self.wss_uri = self.issue_new_wss_url()
        tls = {"context": self.web_client.ssl} if self.web_client.ssl is not None else None
        ws = websocket.create_connection(self.wss_uri, timeout=self.connect_timeout,
                                         enable_multithread=True, sslopt=tls)
        ws.settimeout(None)  # the reader blocks; liveness is the monitor's job
        self._links += 1
        link = _Link(ws, self._links)
        link.reader = threading.Thread(target=self._read, args=(link,), daemon=True,
                                       name=f"socket-mode-read-{link.number}")
        old, self._link = self._link, link
        link.reader.start()
        if old is not None:
            threading.Thread(target=self._retire, args=(old,), daemon=True,
                             name=f"socket-mode-retire-{old.number}").start()
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, daemon=True,
                                             name="socket-mode-monitor")
            self._monitor.start()
        self.logger.info("Socket Mode connection %d open", link.number)

    def disconnect(self) -> None:
        link = self._link
        if link is not None:
            self._retire(link)

    def send_message(self, message: str) -> None:
        """Acks and responses go out on the newest connection; one retry after a reconnect
        if that connection died in between."""
        try:
            self._send(message)
        except SlackClientNotConnectedError:
            with self.connect_operation_lock:
                pass  # a reconnect in progress has finished once we hold the lock
            self._send(message)

    def close(self) -> None:
        self.closed = True
        self._stop.set()
        link, self._link = self._link, None
        if link is not None:
            self._retire(link)
        if self.message_processor.is_alive():
            self.message_processor.shutdown()
        self.message_workers.shutdown(wait=False)

    # -- the connections ------------------------------------------------------------------------
    def _send(self, message: str) -> None:
        link = self._link
        if link is None or not link.alive:
            raise SlackClientNotConnectedError("no open Socket Mode connection")
        try:
            link.ws.send(message)
        except (websocket.WebSocketException, OSError) as exc:
            self._lost(link, f"send failed: {type(exc).__name__}")
            raise SlackClientNotConnectedError(str(exc)) from None

    def _read(self, link: _Link) -> None:
        """Every frame of one connection until it closes; text frames go to slack_sdk's queue
        (hello, envelopes, disconnect)."""
        try:
            while True:  # a retired connection is read until its close or its cut
                opcode, frame = link.ws.recv_data_frame(control_frame=True)
                link.last_frame = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self.enqueue_message(frame.data.decode("utf-8"))
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            if link.alive:
                self.logger.info("Socket Mode connection %d lost: %s", link.number,
                                 type(exc).__name__)
        finally:
            self._lost(link, "closed")

    def _lost(self, link: _Link, why: str) -> None:
        """A connection ended; if it was the current one, replace it now."""
        was_alive, link.alive = link.alive, False
        with contextlib.suppress(Exception):
            link.ws.shutdown()
        if was_alive and link is self._link and not self.closed:
            self.logger.info("Socket Mode connection %d %s: reconnecting", link.number, why)
            self._reconnect()

    def _reconnect(self) -> None:
        """Replace the connection; at most one attempt per `RECONNECT_SPACING` seconds, so
        a Slack that closes every new connection at once is not hammered."""
        wait = self._last_reconnect + RECONNECT_SPACING - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return
        self._last_reconnect = time.monotonic()
        try:
            self.connect_to_new_endpoint()
        except Exception as exc:  # the monitor tries again every ping interval
            self.logger.warning("Socket Mode reconnect failed: %s: %s", type(exc).__name__,
                                str(exc)[:200])

    def _retire(self, link: _Link) -> None:
        """Close a replaced connection without making anyone wait: a close frame, then
        `close_timeout` for Slack's answer (its reader sees it), then the socket is cut."""
        if not link.alive:
            return
        link.alive = False
        with contextlib.suppress(Exception):
            link.ws.send_close(reason=b"refreshed")
        if link.reader is not None and link.reader is not threading.current_thread():
            link.reader.join(self.close_timeout)
        with contextlib.suppress(Exception):
            link.ws.shutdown()
        self.logger.info("Socket Mode connection %d closed", link.number)

    def _watch(self) -> None:
        """Ping the current connection; one silent for three intervals is dead; with none
        open (Slack unreachable at the last try), try again."""
        while not self._stop.wait(self.ping_interval):
            link = self._link
            if link is None or not link.alive:
                self._reconnect()
                continue
            if time.monotonic() - link.last_frame > 3 * self.ping_interval:
                self._lost(link, "silent")
                continue
            with contextlib.suppress(Exception):
                link.ws.ping(b"imagepull-bot")


class SocketModeHandler(BaseSocketModeHandler):
    """Bolt over Socket Mode with the checks `/slack/events` applies before Bolt
    (bot/slack/inbound.py: `screen_interaction`), then, with several clusters, the same
    routing (`route`: a request for another cluster goes to its agent and is acked here). No
    signature: the connection itself is authenticated by the app-level token."""

    def __init__(self, app: App, app_token: str, *, route: Router | None = None,
                 **client_options: Any) -> None:
        self.app = app
        self.route = route
        self.client = PromptSocketModeClient(app_token, app.client, **client_options)
        self.client.socket_mode_request_listeners.append(self.handle)

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        started = time.time()
        try:
            screen_interaction(req.payload)
        except Refused as refused:
            log.warning("slack request refused (socket mode): %s", refused.reason)
            client.send_socket_mode_response({"envelope_id": req.envelope_id})
            return
        except AnsweredAlready:
            client.send_socket_mode_response({"envelope_id": req.envelope_id})
            return
        if self.route is not None and isinstance(req.payload, dict):
            try:
                routed = self.route(req.payload)
            except Exception as exc:  # a routing bug must not cost the ack: run it here
                log.warning("socket mode: could not route the request (%s); it runs here",
                            type(exc).__name__)
                routed = None
            if routed is not None:
                answer = json.loads(routed) if routed else None
                client.send_socket_mode_response(
                    {"envelope_id": req.envelope_id, **({"payload": answer} if answer else {})})
                return
        try:
            response = run_bolt_app(self.app, req)
        except Exception as exc:  # Bolt's context building on a shape nobody expected
            log.warning("slack request refused (socket mode): Bolt could not read it: %s: %r",
                        type(exc).__name__, str(exc)[:200])
            client.send_socket_mode_response({"envelope_id": req.envelope_id})
            return
        send_response(client, req, response, started)
