"""Stdlib HTTP/TCP stubs for registry behaviour that cannot be produced locally otherwise.

Why stubs at all: Docker Hub (rate-limit headers, its token endpoint) is not reachable here,
distribution 2.8 never paginates `tags/list` and never rate-limits, and "the host does not
answer" / "connection refused" need servers that misbehave on purpose. Each stub reproduces only
the documented wire format the bot relies on, and records requests (credentials redacted) so
tests can assert e.g. that HEAD, not GET, was used for a rate-limit check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import secrets
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import quote

from tests.support._http import (
    LOOPBACK,
    StubHandler,
    StubServer,
    parse_basic,
    parse_bearer,
)
from tests.support.leaks import SECRETS

TOOMANYREQUESTS_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by authenticating and "
    "upgrading: https://www.docker.com/increase-rate-limit"
)
TOOMANYREQUESTS_BODY = {"errors": [{"code": "TOOMANYREQUESTS", "message": TOOMANYREQUESTS_MESSAGE}]}
RATE_LIMIT_WINDOW = 21600  # Docker Hub's window: six hours, sent as `;w=21600`
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}

#: Defaults of the fixtures in tests.support.fixtures (kept here so tests can import them
#: without importing the plugin module before pytest does).
HUB_USER = "hubuser"
HUB_PASSWORD = "hub-pass-do-not-print"
PAGINATED_TAGS = ("a", "b", "c", "d", "e")

_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


def _errors(code: str, message: str, detail: object = None) -> dict[str, object]:
    entry: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return {"errors": [entry]}


def _fake_manifest(repo: str, ref: str) -> bytes:
    """A stable small manifest body per (repo, ref): its digest is what HEAD reports."""
    return json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "annotations": {"stub": f"{repo}:{ref}"}}
    ).encode()


# -- Docker Hub -------------------------------------------------------------------------------


@dataclass
class _HubToken:
    user: str | None
    repos: frozenset[str]


class DockerHubStub(StubServer):
    """Docker Hub's auth server + registry for manifest HEAD/GET, rate-limit headers included.

    `GET /token?service=registry.docker.io&scope=repository:<repo>:pull` — anonymous, or Basic
    for a configured user — answers `{"token", "access_token", "expires_in": 300, "issued_at"}`.
    `HEAD|GET /v2/<repo>/manifests/<ref>` requires that Bearer token (else 401 with a Bearer
    challenge naming this stub's `/token` as realm) and answers with Docker Hub's headers:

    - anonymous: `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: <n>;w=21600`,
      `docker-ratelimit-source: 127.0.0.1` (the client IP);
    - authenticated: limit `authenticated_limit` (200) and source = the account id;
    - `unlimited=True`: no ratelimit headers at all (paid accounts / Docker's "no headers" case);
    - `rate_limited=True`: 429, `Retry-After`, ratelimit-remaining 0, TOOMANYREQUESTS body.

    Only GET decrements the remaining count (Docker counts GETs of manifests; HEAD is free),
    so a test can tell a HEAD-only check from a pull. Repositories outside `repos` (when given)
    behave like private/missing Hub repositories: the token grants nothing and the manifest
    request gets 401 `insufficient_scope`. `missing_tags` gives 404 MANIFEST_UNKNOWN.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        anonymous_limit: int = 100,
        authenticated_limit: int = 200,
        remaining: int = 76,
        unlimited: bool = False,
        rate_limited: bool = False,
        retry_after: int = 3600,
        repos: Iterable[str] | None = None,
        missing_tags: Iterable[str] = (),
        account_id: str = "6c3f1a2e-0b7d-4e55-9a51-3b1b9c2f7d10",
    ) -> None:
        super().__init__()
        self._users = dict(users or {})
        for user, password in self._users.items():
            SECRETS.add(password, f"Docker Hub stub password of {user}")
        self.anonymous_limit = anonymous_limit
        self.authenticated_limit = authenticated_limit
        self.remaining = remaining
        self.unlimited = unlimited
        self.rate_limited = rate_limited
        self.retry_after = retry_after
        self.repos = frozenset(repos) if repos is not None else None
        self.missing_tags = frozenset(missing_tags)
        self.account_id = account_id
        self._tokens: dict[str, _HubToken] = {}
        self._state_lock = threading.Lock()

    @property
    def realm(self) -> str:
        """This stub's token endpoint (stands in for https://auth.docker.io/token)."""
        return f"{self.url}/token"

    def issue(self, user: str | None, scopes: Iterable[str]) -> str:
        """Record a new opaque token granting pull on the repositories the scopes name."""
        repos: set[str] = set()
        for raw in scopes:
            kind, _, rest = raw.partition(":")
            name, _, actions = rest.rpartition(":")
            if (
                kind == "repository"
                and "pull" in actions.split(",")
                and (self.repos is None or name in self.repos)
            ):
                repos.add(name)
        token = secrets.token_urlsafe(24)
        SECRETS.add(token, f"Docker Hub stub token for {user or 'anonymous'}")
        with self._state_lock:
            self._tokens[token] = _HubToken(user, frozenset(repos))
        return token

    def lookup(self, token: str | None) -> _HubToken | None:
        """The grant behind a Bearer token, None if unknown."""
        if token is None:
            return None
        with self._state_lock:
            return self._tokens.get(token)

    def rate_headers(self, grant: _HubToken, *, remaining: int | None = None) -> dict[str, str]:
        """The three Docker Hub rate-limit headers for this grant (empty when unlimited)."""
        if self.unlimited:
            return {}
        limit = self.authenticated_limit if grant.user else self.anonymous_limit
        left = self.remaining if remaining is None else remaining
        return {
            "ratelimit-limit": f"{limit};w={RATE_LIMIT_WINDOW}",
            "ratelimit-remaining": f"{left};w={RATE_LIMIT_WINDOW}",
            "docker-ratelimit-source": self.account_id if grant.user else LOOPBACK,
        }

    class Handler(StubHandler):
        """Routes `/token`, `/v2/` and `/v2/<repo>/manifests/<ref>`."""

        def handle_any(self, method: str) -> None:
            hub = self.server.owner
            assert isinstance(hub, DockerHubStub)
            if self.req_path == "/token" and method == "GET":
                self._token(hub)
            elif self.req_path == "/v2/":
                self._v2(hub)
            elif (m := _MANIFEST_PATH.match(self.req_path)) and method in ("GET", "HEAD"):
                self._manifest(hub, m["name"], m["ref"])
            else:
                self.send_json(404, _errors("NOT_FOUND", "not found"))

        def _challenge(self, hub: DockerHubStub, scope: str | None, error: str | None) -> str:
            value = f'Bearer realm="{hub.realm}",service="registry.docker.io"'
            if scope:
                value += f',scope="{scope}"'
            if error:
                value += f',error="{error}"'
            return value

        def _token(self, hub: DockerHubStub) -> None:
            basic = parse_basic(self.auth_header)
            user: str | None = None
            if basic is not None:
                expected = hub._users.get(basic[0])
                if expected is None or not secrets.compare_digest(expected, basic[1]):
                    self.send_json(401, {"details": "incorrect username or password"})
                    return
                user = basic[0]
            token = hub.issue(user, self.req_query.get("scope", []))
            issued = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            self.send_json(
                200,
                {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued},
            )

        def _v2(self, hub: DockerHubStub) -> None:
            if hub.lookup(parse_bearer(self.auth_header)) is None:
                self.send_json(
                    401,
                    _errors("UNAUTHORIZED", "authentication required"),
                    {"www-authenticate": self._challenge(hub, None, None), **API_VERSION_HEADER},
                )
                return
            self.send_json(200, {}, API_VERSION_HEADER)

        def _manifest(self, hub: DockerHubStub, repo: str, ref: str) -> None:
            scope = f"repository:{repo}:pull"
            grant = hub.lookup(parse_bearer(self.auth_header))
            if grant is None or repo not in grant.repos:
                error = "insufficient_scope" if grant is not None else None
                detail = [{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}]
                self.send_json(
                    401,
                    _errors("UNAUTHORIZED", "authentication required", detail),
                    {"www-authenticate": self._challenge(hub, scope, error), **API_VERSION_HEADER},
                )
                return
            if hub.rate_limited:
                headers = {
                    "Retry-After": str(hub.retry_after),
                    **hub.rate_headers(grant, remaining=0),
                    **API_VERSION_HEADER,
                }
                self.send_json(429, TOOMANYREQUESTS_BODY, headers)
                return
            if ref in hub.missing_tags:
                self.send_json(
                    404,
                    _errors("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": ref}),
                    API_VERSION_HEADER,
                )
                return
            if self.command == "GET" and not hub.unlimited:
                with hub._state_lock:
                    hub.remaining = max(hub.remaining - 1, 0)
            body = _fake_manifest(repo, ref)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            headers = {
                "docker-content-digest": digest,
                "docker-distribution-api-version": "registry/2.0",
                "etag": f'"{digest}"',
                **hub.rate_headers(grant),
            }
            self.send_raw(200, body, headers, content_type=DOCKER_MANIFEST)

    handler = Handler


# -- pagination -------------------------------------------------------------------------------


class PaginatingTagsStub(StubServer):
    """`/v2/` + `/v2/<repo>/tags/list?n=&last=` with distribution-spec pagination.

    Tags are returned in lexical order. With `n`, at most n tags after `last` are returned and,
    if more remain, `Link: </v2/<repo>/tags/list?n=<n>&last=<last returned>>; rel="next"` —
    the exact form in the distribution spec. `page_size` imposes a server-side default page
    (as registries that paginate without being asked do); None returns everything when `n` is
    absent. Unknown repositories get 404 NAME_UNKNOWN.
    """

    def __init__(self, tags: Mapping[str, Iterable[str]], *, page_size: int | None = None) -> None:
        super().__init__()
        self.tags = {repo: sorted(set(values)) for repo, values in tags.items()}
        self.page_size = page_size

    class Handler(StubHandler):
        """Routes `/v2/` and tags/list."""

        def handle_any(self, method: str) -> None:
            stub = self.server.owner
            assert isinstance(stub, PaginatingTagsStub)
            if self.req_path == "/v2/":
                self.send_json(200, {}, API_VERSION_HEADER)
                return
            m = _TAGS_PATH.match(self.req_path)
            if m is None or method not in ("GET", "HEAD"):
                self.send_json(404, _errors("NOT_FOUND", "not found"))
                return
            repo = m["name"]
            if repo not in stub.tags:
                self.send_json(
                    404,
                    _errors(
                        "NAME_UNKNOWN", "repository name not known to registry", {"name": repo}
                    ),
                    API_VERSION_HEADER,
                )
                return
            all_tags = stub.tags[repo]
            last = (self.req_query.get("last") or [""])[0]
            raw_n = (self.req_query.get("n") or [""])[0]
            try:
                n = int(raw_n) if raw_n else stub.page_size
            except ValueError:
                self.send_json(
                    400,
                    _errors(
                        "PAGINATION_NUMBER_INVALID",
                        "invalid number of results requested",
                        {"n": raw_n},
                    ),
                )
                return
            remaining = [t for t in all_tags if t > last] if last else list(all_tags)
            page = remaining if n is None else remaining[: max(n, 0)]
            headers = dict(API_VERSION_HEADER)
            if n is not None and len(remaining) > len(page) and page:
                link = f"/v2/{repo}/tags/list?n={n}&last={quote(page[-1], safe='')}"
                headers["Link"] = f'<{link}>; rel="next"'
            self.send_json(200, {"name": repo, "tags": page}, headers)

    handler = Handler


# -- rate-limited registry --------------------------------------------------------------------


class RateLimitedRegistryStub(StubServer):
    """A registry whose manifest endpoint answers 429 + `Retry-After` + TOOMANYREQUESTS.

    `/v2/` answers 200 (anonymous) so a client reaches the manifest request. With
    `limited_requests=k`, only the first k manifest requests are refused and later ones succeed
    with a small manifest — for testing a client that honours Retry-After and retries.
    """

    def __init__(self, *, retry_after: int = 2, limited_requests: int | None = None) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.limited_requests = limited_requests
        self._count = 0
        self._count_lock = threading.Lock()

    class Handler(StubHandler):
        """Routes `/v2/` and manifests."""

        def handle_any(self, method: str) -> None:
            stub = self.server.owner
            assert isinstance(stub, RateLimitedRegistryStub)
            if self.req_path == "/v2/":
                self.send_json(200, {}, API_VERSION_HEADER)
                return
            m = _MANIFEST_PATH.match(self.req_path)
            if m is None:
                self.send_json(404, _errors("NOT_FOUND", "not found"))
                return
            with stub._count_lock:
                stub._count += 1
                limited = stub.limited_requests is None or stub._count <= stub.limited_requests
            if limited:
                self.send_json(
                    429,
                    TOOMANYREQUESTS_BODY,
                    {"Retry-After": str(stub.retry_after), **API_VERSION_HEADER},
                )
                return
            body = _fake_manifest(m["name"], m["ref"])
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.send_raw(
                200,
                body,
                {"Docker-Content-Digest": digest, **API_VERSION_HEADER},
                content_type=DOCKER_MANIFEST,
            )

    handler = Handler


# -- dead hosts -------------------------------------------------------------------------------


class BlackholeServer:
    """Accepts TCP connections on loopback and never sends a byte (for timeout tests).

    Accepted sockets are held open until `stop()`, so a client sees a connected socket whose
    read never returns — the "registry is firewalled / hung" case, not a refusal.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> Self:
        """Listen on a free loopback port; returns self."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
        sock.settimeout(0.1)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="blackhole", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    @property
    def port(self) -> int:
        """The listening port."""
        if self._sock is None:
            raise RuntimeError("BlackholeServer is not started")
        return int(self._sock.getsockname()[1])

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{self.host}"

    @property
    def connections(self) -> int:
        """How many connections were accepted (proves the client did connect)."""
        return len(self._held)

    def stop(self) -> None:
        """Close the listener and every held connection (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for conn in self._held:
            conn.close()
        self._held.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r\n")


class SlowProxy:
    """A loopback TCP forwarder to a real server that holds each new connection `delay`
    seconds before it passes anything on: the real registry's answers, late (the "registry is
    slow" case). Records the HTTP request lines it forwarded (`requests`: "HEAD /v2/...")."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.requests: list[str] = []
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
        sock.settimeout(0.1)
        self._sock = sock
        threading.Thread(target=self._accept_loop, name="slow-proxy", daemon=True).start()
        return self

    def _accept_loop(self) -> None:
        while not self._stopping.is_set() and self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self._stopping.wait(self.delay):
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            conn.close()
            return
        with self._lock:
            self._open.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, conn, False), daemon=True).start()
        self._pump(conn, upstream, True)

    def _pump(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                if record:
                    with self._lock:
                        self.requests.extend(f"{m.group(1).decode()} {m.group(2).decode()}"
                                             for m in _REQUEST_LINE.finditer(data))
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        if self._sock is None:
            raise RuntimeError("SlowProxy is not started")
        return f"http://{LOOPBACK}:{self._sock.getsockname()[1]}"

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


#: the sockets behind `closed_port`, held bound for the life of the test process
_HELD_CLOSED: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port with no listener: connecting to it is refused (ECONNREFUSED).

    The port stays bound (never listened on) until the test process ends, so no other
    server can take it: released at once, it was taken within the same test by a server of
    another xdist worker binding port 0 (a token stub answered 404 where a refusal was due).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    _HELD_CLOSED.append(sock)
    return int(sock.getsockname()[1])
