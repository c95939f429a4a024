"""HTTP mode: `/slack/events` for Slack, `/healthz` and `/readyz` for Kubernetes probes.

A plain WSGI app on the standard library's threading server: Bolt's WSGI adapter does the
Slack part (signature check, 3-second ack), and nothing else needs a framework.
"""

from __future__ import annotations

import logging
import socketserver
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app import Runtime
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


def wsgi_app(bolt: App, runtime: Runtime) -> Callable[[dict[str, Any], StartResponse],
                                                       Iterable[bytes]]:
    slack = SlackRequestHandler(bolt, path="/slack/events")

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
        if path == "/slack/events":
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def make_http_server(bolt: App, runtime: Runtime, host: str, port: int) -> WSGIServer:
    return make_server(host, port, wsgi_app(bolt, runtime), server_class=_ThreadingWSGIServer,
                       handler_class=_QuietHandler)
