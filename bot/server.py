"""HTTP mode: `/slack/events` for Slack, `/healthz`, `/readyz` and `/metrics` for the platform
(Socket Mode serves the last three alone: `make_ops_server`).

A plain WSGI app served by waitress. Why waitress and not the standard library's threading
server: that server starts one thread per connection and has no read timeout, so 300 clients
that send headers and never finish their body held 300 threads. Waitress reads every request
completely in one event loop before a bounded pool of worker threads sees it, closes
connections idle longer than `read_timeout`, caps open connections and body size, and is pure
Python (no fork: the watcher, scheduler and store clients live in this one process).

`/slack/events` passes bot.slack.inbound's gate (size, signature, shape) before Bolt sees it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from waitress import wasyncore
from waitress.server import MultiSocketServer, create_server

from bot.app import Runtime, build_bolt_app
from bot.chatops.bus import SOCKET_MODE, BusRequest, Dispatch, FleetBus, RelayedAck
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.slack.inbound import (
    MAX_BODY_BYTES,
    Admitted,
    AnsweredAlready,
    Refused,
    SlackGate,
    response_url_of,
    screen_interaction,
)
from bot.slack.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class HttpLimits:
    """What one client can hold. Slack sends small bodies at once and wants an answer within
    3 s, so a connection silent for `read_timeout` seconds is a stalled or hostile client."""

    threads: int = 8  # requests handled at once (each Slack ack takes milliseconds)
    read_timeout: float = 10.0  # seconds without a byte before the connection is closed
    connection_limit: int = 500  # open connections; past it new ones wait in the backlog
    max_body: int = MAX_BODY_BYTES
    check_interval: float = 1.0  # how often idle connections are looked for


def _json(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


_REASONS = {400: "400 Bad Request", 401: "401 Unauthorized", 413: "413 Payload Too Large"}


class SlackEndpoint:
    """`POST /slack/events`: the gate, then Bolt; a refusal is one log line and a short body."""

    def __init__(self, bolt: App, signing_secret: str | None, max_body: int,
                 bus: FleetBus | None = None) -> None:
        self.bolt = bolt
        self.gate = SlackGate(signing_secret, max_body)
        #: several clusters: a request for another cluster's agent goes there (issue 13)
        self.bus = bus

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        try:
            length = self.gate.content_length(environ.get("CONTENT_LENGTH"))
            body = environ["wsgi.input"].read(length) if length else b""
            admitted = self.gate.admit(
                body, content_type=environ.get("CONTENT_TYPE"),
                timestamp=environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
                signature=environ.get("HTTP_X_SLACK_SIGNATURE"))
            screen_interaction(admitted.payload)
        except Refused as refused:
            log.warning("slack request refused (%d): %s", refused.status, refused.reason)
            return _json(start_response, _REASONS[refused.status],
                         f'{{"error": "{refused.error}"}}'.encode())
        except AnsweredAlready:
            return _json(start_response, "200 OK", b"")
        if self.bus is not None:
            route = self.bus.route(
                admitted, timestamp=environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "",
                signature=environ.get("HTTP_X_SLACK_SIGNATURE") or "",
                content_type=environ.get("CONTENT_TYPE") or "")
            if route.kind != "local":
                return _json(start_response, "200 OK", route.body.encode())
        return self._dispatch(environ, admitted, start_response)

    def _dispatch(self, environ: dict[str, Any], admitted: Admitted,
                  start_response: StartResponse) -> Iterable[bytes]:
        http = WsgiHttpRequest(environ)
        try:
            request = BoltRequest(body=admitted.body.decode("utf-8"), query=http.query_string,
                                  headers=http.get_headers())
            bolt = self.bolt.dispatch(request)
        except Exception as exc:  # Bolt's context building on a shape nobody expected
            log.warning("slack request refused (400): Bolt could not read it: %s: %r",
                        type(exc).__name__, str(exc)[:200])
            return _json(start_response, "400 Bad Request", b'{"error": "malformed request"}')
        response = WsgiHttpResponse(status=bolt.status, headers=bolt.headers, body=bolt.body)
        start_response(response.status, response.get_headers())
        return response.get_body()


def ops_app(runtime: Runtime) -> WsgiApp:
    """`/healthz`, `/readyz`, `/metrics`: what the platform asks in both modes (Socket Mode has
    no `/slack/events`, but the Deployment's probes and the scrapes stay the same)."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ready, why = runtime.ready()
            start_response("200 OK" if ready else "503 Service Unavailable",
                           [("Content-Type", "text/plain")])
            return [f"{why}\n".encode()]
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE)])
            return [runtime.metrics.render()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def bolt_dispatch(bolt: App) -> Dispatch:
    """Run a request another agent routed here through this agent's Bolt app, as its
    transport delivered it to that agent: Slack's HTTP request (Bolt verifies Slack's
    signature again) or a Socket Mode request (bot.chatops.bus verified the agent signature).
    The shape checks both transports make come first, then this agent's listeners apply its
    own rules (APPROVERS, COMMAND_CHANNELS, REMEDIATION_ENABLED), whichever mode it runs in.
    `bolt` should be `bus_bolt_app`'s: the bus records a request done when this returns."""

    def dispatch(request: BusRequest) -> tuple[int, str]:
        try:
            screen_interaction(request.payload)
        except Refused as refused:
            log.warning("bus request refused (%d): %s", refused.status, refused.reason)
            return refused.status, ""
        except AnsweredAlready:
            return 200, ""
        if request.transport == SOCKET_MODE:
            bolt_request = BoltRequest(mode="socket_mode", body=request.payload)
        else:
            bolt_request = BoltRequest(body=request.body, headers=dict(request.headers))
        if "command" in request.payload:  # its ack reaches the person only through this
            bolt_request.context["ack"] = RelayedAck(response_url_of(request.payload))
        try:
            response = bolt.dispatch(bolt_request)
        except Exception as exc:  # Bolt's context building on a shape nobody expected
            log.warning("bus request refused (400): Bolt could not read it: %s: %r",
                        type(exc).__name__, str(exc)[:200])
            return 400, ""
        return response.status, response.body

    return dispatch


def bus_bolt_app(runtime: Runtime) -> App:
    """The Bolt app that runs requests routed here, with `process_before_response`: Bolt
    returns from `dispatch` when the listener has finished, not when it acked, so the bus marks
    a request done only after its effect (bot.chatops.bus); the ack is relayed to the person
    from inside `ack()` (`RelayedAck`), so nobody waits longer for it."""
    return build_bolt_app(runtime.settings, runtime, process_before_response=True)


def socket_mode_handler(bolt: App, runtime: Runtime, app_token: str,
                        **client_options: Any) -> SocketModeHandler:
    """Socket Mode as `python -m bot socket` runs it: with several clusters (a bus), requests
    for another cluster are routed as `/slack/events` routes them (bot.chatops.bus
    `route_socket`), and requests other agents route here run through `bolt`."""
    runtime.serve_bus(bolt_dispatch(bus_bolt_app(runtime)))
    bus = runtime.bus
    if bus is None:
        return SocketModeHandler(bolt, app_token, **client_options)
    signing = runtime.settings.slack_signing_secret
    if not (signing and signing.get_secret_value()):
        log.warning("REDIS_URL is set but SLACK_SIGNING_SECRET is not: this Socket Mode agent "
                    "can neither forward requests for other clusters (it signs them with the "
                    "Slack app's signing secret) nor run the ones other agents forward here")

    def route(payload: dict[str, Any]) -> str | None:
        routed = bus.route_socket(payload)
        return None if routed.kind == "local" else routed.body

    return SocketModeHandler(bolt, app_token, route=route, **client_options)


def wsgi_app(bolt: App, runtime: Runtime, max_body: int = MAX_BODY_BYTES) -> WsgiApp:
    signing = runtime.settings.slack_signing_secret
    slack = SlackEndpoint(bolt, signing.get_secret_value() if signing else None, max_body,
                          bus=runtime.bus)
    runtime.serve_bus(bolt_dispatch(bus_bolt_app(runtime)))
    ops = ops_app(runtime)

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == "/slack/events":
            return slack(environ, start_response)
        return ops(environ, start_response)

    return application


class HttpServer:
    """waitress, with the small surface `serve` and the tests use: `serve_forever()` in one
    thread, `shutdown()` from another (returns once the loop has stopped), `server_close()`."""

    def __init__(self, app: WsgiApp, host: str, port: int, limits: HttpLimits) -> None:
        self._map: dict[int, Any] = {}
        self._server = create_server(
            app, map=self._map, host=host, port=port, threads=limits.threads,
            channel_timeout=limits.read_timeout, cleanup_interval=limits.check_interval,
            connection_limit=limits.connection_limit, max_request_body_size=limits.max_body,
            asyncore_use_poll=True, ident="imagepull-bot", clear_untrusted_proxy_headers=True)
        if isinstance(self._server, MultiSocketServer):  # a host name with several addresses
            host, port = self._server.effective_listen[0][:2]
        else:
            assert self._server.socket is not None  # bound by create_server
            host, port = self._server.socket.getsockname()[:2]
        self.server_address: tuple[str, int] = (str(host), int(port))
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Run the event loop until shutdown() or KeyboardInterrupt (how `serve` turns
        SIGTERM into a stop; it propagates after the drain)."""
        self._stopped.clear()
        try:
            try:
                while not self._stop.is_set() and self._map:
                    wasyncore.loop(timeout=poll_interval, use_poll=True, map=self._map, count=1)
            except KeyboardInterrupt:
                self._drain()
                raise
            self._drain()
        finally:
            self._server.task_dispatcher.shutdown(timeout=5)
            self._stopped.set()

    def _drain(self, seconds: float = 3.0) -> None:
        """Stop accepting; let requests already read finish and their answers go out (an ack
        cut at shutdown is a retry or an error shown to someone in Slack)."""
        for channel in list(self._map.values()):
            if hasattr(channel, "accepting"):
                channel.accepting = False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(
                getattr(ch, "requests", None) or getattr(ch, "total_outbufs_len", 0)
                for ch in list(self._map.values())):
            wasyncore.loop(timeout=0.05, use_poll=True, map=self._map, count=1)

    def shutdown(self) -> None:
        self._stop.set()
        if not isinstance(self._server, MultiSocketServer):
            self._server.pull_trigger()  # wake the loop now rather than after poll_interval
        self._stopped.wait(10)

    def server_close(self) -> None:
        for channel in list(self._map.values()):
            with contextlib.suppress(OSError):
                channel.close()


def make_http_server(bolt: App, runtime: Runtime, host: str, port: int,
                     limits: HttpLimits | None = None) -> HttpServer:
    limits = limits or HttpLimits()
    return HttpServer(wsgi_app(bolt, runtime, limits.max_body), host, port, limits)


def make_ops_server(runtime: Runtime, host: str, port: int,
                    limits: HttpLimits | None = None) -> HttpServer:
    """The server `socket` runs beside its Socket Mode connection: the ops endpoints only."""
    return HttpServer(ops_app(runtime), host, port, limits or HttpLimits())
