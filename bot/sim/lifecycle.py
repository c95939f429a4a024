"""The lifecycle every local stand-in shares: `with Server() as s:` starts it, leaving the
block stops it, and `url` is its loopback address. Each server says only how it starts,
stops and which port it got.

The HTTP stand-ins also share how they serve: `HTTPListener` runs a `TrackingHTTPServer`
(which can cut the connections it accepted) and takes a port through outages: refusing
keeps the port bound but not listening (`reserve_port`), serving again reuses it."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class LoopbackService(ABC):
    """Context-manager and address boilerplate for servers on 127.0.0.1."""

    host: str = "127.0.0.1"

    @abstractmethod
    def start(self) -> Self:
        """Start serving (idempotence is up to the server); return self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    @property
    @abstractmethod
    def port(self) -> int:
        """The bound port; RuntimeError before start()."""

    @property
    def running(self) -> bool:
        try:
            return bool(self.port)
        except RuntimeError:
            return False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class TrackingHTTPServer(ThreadingHTTPServer):
    """The threading HTTP server, keeping track of the connections it accepted so that
    stopping can cut them (``shutdown`` wakes a handler blocked reading the next request of
    a keep-alive connection; ``close`` is completed by the socket's last user). ``stopping``
    is set when the server is closing, for handlers that run long (a watch stream) to end."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 bind_and_activate: bool = True) -> None:
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler, bind_and_activate=bind_and_activate)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer (a cut connection, an outage test) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> int:
        """Cut every connection open now (the listening socket stays); returns how many."""
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        return len(connections)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to the port but not listening: a client's SYN gets a reset (connection
    refused), and no other socket can take the port meanwhile.

    ``SO_REUSEADDR`` is on for the bind (the cut connections linger in TIME_WAIT on this
    port) and off once bound: a bound socket that allows address reuse and is not listening
    lets any other ``SO_REUSEADDR`` socket (every stdlib server) bind and listen on the port
    too. ``HTTPListener.serve`` turns it back on before listening again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 5
    while True:
        try:
            sock.bind((host, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.05)


class HTTPListener:
    """The serving half of a stand-in: one port through start, outages and stop.

    ``serve`` answers on a port from a background thread; ``refuse`` cuts every open
    connection (keep-alive connections in a client's pool, watch streams) and keeps the port
    bound but not listening, so clients get connection refused and nobody else takes the
    port; ``serve`` again listens on that same port; ``close`` cuts everything and releases
    the port. A server that only closed its listening socket would go on answering on the
    connections already open, and an outage test would then test nothing."""

    def __init__(self, host: str, name: str) -> None:
        self.host, self.name = host, name
        self._server: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._placeholder: socket.socket | None = None
        self._port = 0

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def refusing(self) -> bool:
        return self._placeholder is not None

    @property
    def port(self) -> int:
        """The bound port while serving or refusing, else 0."""
        return self._port

    def serve(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> int:
        """Serve ``handler`` on ``port`` (0: a free one) or, while refusing, on the reserved
        port again (``port`` is then ignored); returns the bound port."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already serving")
        placeholder, self._placeholder = self._placeholder, None
        if placeholder is None:
            server = TrackingHTTPServer((self.host, port), handler)
        else:
            server = TrackingHTTPServer(placeholder.getsockname(), handler,
                                        bind_and_activate=False)
            server.socket.close()
            server.socket = placeholder
            # as for any stdlib server, TIME_WAIT leftovers on the port must not block listen
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.server_activate()  # listen(): connections are accepted again
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"{self.name}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self._port

    def close_connections(self) -> int:
        """Cut the connections open now and go on listening (an outage answering 503 must not
        let a request from before it finish); returns how many were cut."""
        return self._server.close_connections() if self._server is not None else 0

    def refuse(self) -> None:
        """Stop listening and cut every open connection, keeping the port reserved."""
        if self._server is None:
            return
        port = self._port
        self._close_server()
        self._placeholder = reserve_port(self.host, port)

    def close(self) -> None:
        """Stop serving (or refusing), cut every open connection and release the port."""
        self._close_server()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        self._port = 0

    def _close_server(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.stopping.set()  # long-running handlers of this server end
            server.shutdown()
            server.close_connections()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
