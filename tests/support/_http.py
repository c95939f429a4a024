"""Shared plumbing for the stdlib HTTP servers in this package.

Why: every stub (Docker Hub, token server, pagination, rate limit) needs the same things — a
free loopback port, a daemon thread, a clean shutdown, and a record of requests that tests can
assert on (HEAD vs GET, which auth scheme was sent) without ever keeping a password in it.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
REDACTED = "<redacted>"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as a stub saw it, with credentials removed.

    `headers` has lower-case names; an Authorization value is replaced by its scheme plus
    `<redacted>`, so a recorded request can be printed in an assertion message safely.
    `auth_user` is the Basic username (never the password) when Basic was sent.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    auth_scheme: str | None = None
    auth_user: str | None = None
    body: bytes = field(default=b"", repr=False)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` value, None if absent or malformed."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def parse_bearer(header: str | None) -> str | None:
    """The token from an `Authorization: Bearer ...` value, None otherwise."""
    if not header or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


class StubHandler(BaseHTTPRequestHandler):
    """Base handler: records each request on the owning server and dispatches to `handle_any`.

    Subclasses implement `handle_any(method)`. HTTP/1.1 with explicit Content-Length so clients
    can reuse connections the way a real registry allows.
    """

    protocol_version = "HTTP/1.1"
    server: StubHTTPServer
    methods: ClassVar[tuple[str, ...]] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence stderr logging: pytest output stays readable, requests are recorded instead."""

    def _record(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.body = body
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        auth = headers.get("authorization")
        scheme = user = None
        if auth is not None:
            scheme = auth.split(" ", 1)[0]
            headers["authorization"] = f"{scheme} {REDACTED}"
            basic = parse_basic(auth)
            user = basic[0] if basic else None
        self.auth_header = auth
        self.req_path = split.path
        self.req_query = parse_qs(split.query, keep_blank_values=True)
        self.server.owner.record(
            RecordedRequest(
                method=method,
                path=split.path,
                query=self.req_query,
                headers=headers,
                auth_scheme=scheme,
                auth_user=user,
                body=body,
            )
        )

    def _dispatch(self) -> None:
        self._record(self.command)
        self.handle_any(self.command)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def handle_any(self, method: str) -> None:
        """Answer the request; override in subclasses."""
        self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})

    def send_raw(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str | None = None,
        content_length: int | None = None,
    ) -> None:
        """Send a response; HEAD gets the headers (including the GET length) but no body."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        length = len(body) if content_length is None else content_length
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(
        self, status: int, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send a JSON body (`application/json; charset=utf-8`, as distribution does)."""
        body = (json.dumps(payload) + "\n").encode()
        self.send_raw(status, body, headers, content_type="application/json; charset=utf-8")


class StubHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows the stub object owning it (for recording and state)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[StubHandler], owner: StubServer) -> None:
        super().__init__((LOOPBACK, 0), handler)
        self.owner = owner


class StubServer:
    """A stdlib HTTP server on a free loopback port, run in a daemon thread.

    Use as a context manager or call `start()`/`stop()`. `requests` lists what it received.
    """

    handler: ClassVar[type[StubHandler]] = StubHandler

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._httpd: StubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind a free port and serve in the background; returns self for chaining."""
        if self._httpd is not None:
            return self
        self._httpd = StubHTTPServer(self.handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`: the registry host as it appears in an image reference."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, `http://127.0.0.1:<port>`."""
        return f"http://{self.host}"

    # -- recording -------------------------------------------------------------------------
    def record(self, request: RecordedRequest) -> None:
        """Called by the handler for every request (thread-safe)."""
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget recorded requests (e.g. between phases of one test)."""
        with self._lock:
            self._requests.clear()
