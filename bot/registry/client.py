"""A small OCI distribution (Docker Registry v2) client that asks registries what the kubelet saw.

Why it exists: the diagnosis engine reads the kubelet's words; this client checks them against
the registry itself ("does the tag exist?", "do these pull credentials work?", "is the registry
reachable from here?") and turns every answer into a `Probe` whose `cause` speaks the same
vocabulary as the diagnosis (`bot.diagnosis.causes.Cause`).

Library verdict (python-dxf 12.1.1 evaluated and rejected; built on httpx):

- `python-dxf` refuses any authentication over plain HTTP (`authenticate()` raises
  `DXFAuthInsecureError` when `insecure=True`), so it cannot talk to an htpasswd or token
  registry on an insecure host at all, and it rewrites every token realm to `https://`.
- Non-2xx answers become `requests.HTTPError` / a bare `DXFUnauthorizedError`: the registry's
  JSON error code (`MANIFEST_UNKNOWN` vs `NAME_UNKNOWN`), the `insufficient_scope` error of the
  Bearer challenge and `Retry-After` are thrown away — exactly what a diagnosis needs.
- Tokens live on one object with no expiry; there is no per-host CA/insecure configuration
  (one `tlsverify`/`insecure` per instance) and it pulls in `tqdm` and an untyped
  `www-authenticate` parser.
- It does offer per-instance timeouts and keeps passwords out of its exception messages, but
  that is the easy part.

So the protocol logic (challenge → token → retry, error-code mapping, `Link` pagination) is
written here, on `httpx`: typed, separate connect/read timeouts, an `SSLContext` per client
(one client per CA bundle), `Response.links`, and a clean exception hierarchy whose chained
causes tell DNS, refusal, timeout and certificate failures apart.

Secrets: passwords, dockerconfigjson `auth` strings, bearer tokens and `Authorization` headers
never reach a log record, a `Probe`, a repr or an exception message. Logging is debug level with
host / repository / status only.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urljoin, urlsplit

import httpx

from bot.diagnosis.causes import Cause
from bot.diagnosis.imageref import DOCKER_HUB, DOCKER_HUB_SPELLINGS, ImageRef, parse_image

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

#: Every manifest kind a runtime pulls today. Distribution 2.8 answers an OCI manifest with
#: 404 MANIFEST_UNKNOWN unless OCI types are listed, and a Docker schema 2 manifest with 400 when
#: no Accept is sent at all — so a probe without this header would misdiagnose a present tag.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io"
USER_AGENT = "imagepull-bot (registry probe)"

#: A diagnosis must never hang on a dead registry: 3 s to connect, 5 s per read.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)

#: The distribution token spec's default lifetime when a token server omits `expires_in`.
DEFAULT_TOKEN_SECONDS = 60


# -- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry username and password; `repr`/`str` show the username only.

    Why a type of its own: every place that holds a password must be unable to print it by
    accident (f-strings, logging `%r`, pytest assertion rewriting all go through `repr`).
    """

    username: str
    password: str = field(repr=False)

    @classmethod
    def from_auth(cls, auth_b64: str) -> RegistryCredentials:
        """Decode a dockerconfigjson `auth` field (base64 of `user:password`).

        The error message never echoes the input: it *is* the secret.
        """
        try:
            raw = auth_b64.strip()
            raw += "=" * (-len(raw) % 4)  # some tools drop the padding
            decoded = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("the `auth` field is not valid base64 of `user:password`") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise ValueError("the `auth` field does not decode to `user:password`")
        return cls(username, password)

    def basic_header(self) -> str:
        """The `Authorization` value for HTTP Basic (never log it)."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def _who(credentials: RegistryCredentials | None) -> str:
    return f"user {credentials.username!r}" if credentials else "anonymous"


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach registries.

    - `timeout`: per HTTP request (a float means the same for connect and read).
    - `ca_bundles`: registry host (`host` or `host:port`, as in the image) → CA file to trust
      for it, the bot's copy of a node's `/etc/containerd/certs.d/<host>/ca.crt`.
    - `insecure_hosts`: the only hosts reached over plain HTTP (like containerd's
      `insecure-registries`); every other host is HTTPS with verification on.
    - `endpoints`: host → base URL overrides (a mirror, or a loopback stub in tests). Docker Hub
      (any spelling) defaults to `https://registry-1.docker.io`. An `http://` endpoint is only
      accepted for a host in `insecure_hosts`, so no configuration quietly drops TLS.
    - `cache_ttl`: seconds a probe or tag list is reused (0 disables the cache).
    - `trust_env`: honour `HTTPS_PROXY`/`NO_PROXY`/`SSL_CERT_FILE` as the runtime would.
    """

    timeout: httpx.Timeout | float = field(default_factory=lambda: DEFAULT_TIMEOUT)
    ca_bundles: Mapping[str, str | Path] = field(default_factory=dict)
    insecure_hosts: frozenset[str] | set[str] = field(default_factory=frozenset)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    cache_ttl: float = 60.0
    trust_env: bool = True

    def __post_init__(self) -> None:
        for host, url in self.endpoints.items():
            scheme = urlsplit(url).scheme
            if scheme not in ("http", "https"):
                raise ValueError(f"endpoint for {host!r} must be an http(s) URL")
            if scheme == "http" and host not in self.insecure_hosts:
                raise ValueError(
                    f"endpoint for {host!r} is plain HTTP but {host!r} is not in insecure_hosts"
                )

    @property
    def http_timeout(self) -> httpx.Timeout:
        """The timeout as httpx wants it."""
        t = self.timeout
        return t if isinstance(t, httpx.Timeout) else httpx.Timeout(float(t))

    def base_url(self, host: str) -> str:
        """Where `host`'s `/v2/` API lives (no trailing slash)."""
        if host in self.endpoints:
            return self.endpoints[host].rstrip("/")
        if host in DOCKER_HUB_SPELLINGS:
            return self.endpoints.get(DOCKER_HUB, DOCKER_HUB_ENDPOINT).rstrip("/")
        scheme = "http" if host in self.insecure_hosts else "https"
        return f"{scheme}://{host}"

    def ca_bundle_for(self, host: str) -> str | None:
        """The CA file configured for `host` (exact `host:port` first, then the bare name)."""
        for key in (host, host.rsplit(":", 1)[0] if ":" in host else host):
            if key in self.ca_bundles:
                return str(self.ca_bundles[key])
        return None


# -- results ----------------------------------------------------------------------------------


class Outcome(StrEnum):
    """What a registry request came to; `Probe.cause` maps it to the diagnosis vocabulary."""

    OK = "ok"
    MANIFEST_UNKNOWN = "manifest_unknown"
    NAME_UNKNOWN = "name_unknown"
    UNAUTHORIZED = "unauthorized"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    DNS_FAILURE = "dns_failure"
    UNREACHABLE = "unreachable"
    TLS_UNTRUSTED = "tls_untrusted"
    HTTP_ERROR = "http_error"


_OUTCOME_CAUSE: dict[Outcome, Cause] = {
    Outcome.MANIFEST_UNKNOWN: Cause.TAG_NOT_FOUND,
    Outcome.NAME_UNKNOWN: Cause.REPOSITORY_NOT_FOUND,
    Outcome.UNAUTHORIZED: Cause.AUTH_REQUIRED,
    Outcome.DENIED: Cause.FORBIDDEN,
    Outcome.RATE_LIMITED: Cause.RATE_LIMITED,
    Outcome.DNS_FAILURE: Cause.DNS_FAILURE,
    Outcome.UNREACHABLE: Cause.NETWORK_UNREACHABLE,
    Outcome.TLS_UNTRUSTED: Cause.TLS_UNTRUSTED,
}

#: Distribution error codes (docs/spec/api.md) that decide the outcome regardless of status.
_CODE_OUTCOME: dict[str, Outcome] = {
    "MANIFEST_UNKNOWN": Outcome.MANIFEST_UNKNOWN,
    "NAME_UNKNOWN": Outcome.NAME_UNKNOWN,
    "UNAUTHORIZED": Outcome.UNAUTHORIZED,
    "DENIED": Outcome.DENIED,
    "TOOMANYREQUESTS": Outcome.RATE_LIMITED,
}


@dataclass(frozen=True)
class Probe:
    """One registry answer, reduced to what a diagnosis needs.

    `cause` is derived from `outcome` (None for `ok` and `http_error`). `status` is None when no
    HTTP answer arrived (DNS, refusal, timeout, TLS). `registry_code` is the first JSON error
    code (`MANIFEST_UNKNOWN`...). `insufficient_scope` is the Bearer challenge's
    `error="insufficient_scope"`: distribution answers a valid user without access with 401 and
    that flag, which is how "no access" differs from "wrong password" (the latter fails at the
    token endpoint). `message` is a short explanation safe to show: never a credential or token.
    """

    outcome: Outcome
    registry: str
    repository: str | None = None
    reference: str | None = None
    status: int | None = None
    digest: str | None = None
    media_type: str | None = None
    registry_code: str | None = None
    retry_after: float | None = None
    insufficient_scope: bool = False
    message: str = ""
    cause: Cause | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cause", _OUTCOME_CAUSE.get(self.outcome))

    @property
    def ok(self) -> bool:
        """The request succeeded."""
        return self.outcome is Outcome.OK

    @property
    def reachable(self) -> bool:
        """The registry answered over HTTP at all (any status)."""
        return self.status is not None


@dataclass(frozen=True)
class TagList:
    """Tags of a repository and the probe of the last request (why it stopped, if it failed).

    `complete` is False when `max_pages` was reached or a page failed: `tags` then holds what
    was collected so far.
    """

    tags: tuple[str, ...]
    probe: Probe
    complete: bool = True

    @property
    def ok(self) -> bool:
        """All pages were read."""
        return self.probe.ok and self.complete


# -- WWW-Authenticate -------------------------------------------------------------------------

_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` challenge: scheme (lower-case) and its parameters."""

    scheme: str
    params: Mapping[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        """Parse `Bearer realm="…",service="…",scope="repository:a:pull,push",error="…"`.

        Quoted values may contain commas (scopes with several actions), hence a real
        tokenizer rather than `split(",")`.
        """
        scheme, _, rest = header.strip().partition(" ")
        if not scheme:
            return None
        params = {
            m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "")
            for m in _PARAM.finditer(rest)
        }
        return cls(scheme.lower(), params)

    @classmethod
    def from_response(cls, response: httpx.Response) -> Challenge | None:
        """The Bearer challenge if one is offered, else the first challenge."""
        parsed = [c for h in response.headers.get_list("www-authenticate") if (c := cls.parse(h))]
        for challenge in parsed:
            if challenge.scheme == "bearer":
                return challenge
        return parsed[0] if parsed else None

    @property
    def insufficient_scope(self) -> bool:
        """The registry knows who we are but will not grant the scope."""
        return self.params.get("error") == "insufficient_scope"


# -- internals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_transport_error(exc: httpx.HTTPError, timeout: httpx.Timeout) -> tuple[Outcome, str]:
    """Map a transport failure to an outcome and a safe reason (never the request headers)."""
    chain = list(_exception_chain(exc))
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            reason = err.verify_message or "certificate verification failed"
            return Outcome.TLS_UNTRUSTED, f"TLS certificate not trusted ({reason})"
    for err in chain:
        if isinstance(err, socket.gaierror):
            return Outcome.DNS_FAILURE, "the host name does not resolve"
    for err in chain:
        if isinstance(err, ssl.SSLError):
            reason = err.reason or type(err).__name__
            return (
                Outcome.TLS_UNTRUSTED,
                f"TLS handshake failed ({reason}); the port may speak plain HTTP",
            )
    if isinstance(exc, httpx.ConnectTimeout):
        return Outcome.UNREACHABLE, f"no connection within {timeout.connect} s (timeout)"
    if isinstance(exc, httpx.TimeoutException):
        return Outcome.UNREACHABLE, f"no answer within {timeout.read} s (read timeout)"
    for err in chain:
        if isinstance(err, ConnectionRefusedError):
            return Outcome.UNREACHABLE, "connection refused"
        if isinstance(err, ConnectionResetError):
            return Outcome.UNREACHABLE, "connection reset by peer"
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError):
        return Outcome.UNREACHABLE, f"network error ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return Outcome.UNREACHABLE, "the server closed the connection without a valid answer"
    return Outcome.HTTP_ERROR, f"request failed ({type(exc).__name__})"


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    """(code, message) of the first entry of a distribution `{"errors": [...]}` body."""
    if not response.content:
        return None, None
    try:
        payload = json.loads(response.content)
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    errors = payload.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, message = errors[0].get("code"), errors[0].get("message")
        return (
            str(code) if code is not None else None,
            str(message)[:200] if message is not None else None,
        )
    return None, None


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def _same_origin(a: str, b: str) -> bool:
    sa, sb = urlsplit(a), urlsplit(b)
    return (sa.scheme, sa.netloc) == (sb.scheme, sb.netloc)


class _Failure(Exception):
    """Internal: carries a ready Probe out of the request machinery (never escapes)."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(probe.message)
        self.probe = probe


@dataclass(frozen=True)
class _Target:
    host: str
    repository: str | None
    reference: str | None


# -- the client -------------------------------------------------------------------------------


class RegistryClient:
    """Synchronous, thread-safe registry client for diagnosis probes.

    Why synchronous: each probe is a handful of short requests bounded by small timeouts, and
    the callers (CLI, handlers running diagnoses in worker threads) are synchronous. Close it
    (or use it as a context manager) to release pooled connections.
    """

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        self._clients: dict[str | None, httpx.Client] = {}
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._basic_hosts: set[str] = set()
        self._results: dict[tuple[str, ...], tuple[float, object]] = {}
        self._lock = threading.Lock()
        # Per-process key: cache entries for a corrected password must not be confused with
        # the old one, but the cache key must not hold anything that reveals the password.
        self._fingerprint_key = secrets.token_bytes(16)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient(cache_ttl={self.settings.cache_ttl})"

    def clear_cache(self, *, tokens: bool = False) -> None:
        """Forget cached probe and tag results (and bearer tokens when `tokens=True`)."""
        with self._lock:
            self._results.clear()
            if tokens:
                self._tokens.clear()
                self._basic_hosts.clear()

    # -- public operations -------------------------------------------------------------------
    def ping(self, registry: str, credentials: RegistryCredentials | None = None) -> Probe:
        """`GET /v2/`: is the registry there, and does it want authentication?

        `unauthorized` here still means the registry is reachable (`probe.reachable`).
        """
        target = _Target(registry, None, None)
        key = self._cache_key("ping", target, credentials)
        cached = self._cached(key)
        if isinstance(cached, Probe):
            return cached
        url = f"{self.settings.base_url(registry)}/v2/"
        try:
            response = self._authorized("GET", url, target, credentials)
            probe = self._probe(response, target, credentials, not_found=Outcome.HTTP_ERROR)
        except _Failure as failure:
            probe = failure.probe
        self._store(key, probe, probe)
        return probe

    def head_manifest(
        self,
        image: ImageRef | str,
        credentials: RegistryCredentials | None = None,
        *,
        check_repository: bool = True,
    ) -> Probe:
        """`HEAD /v2/<repo>/manifests/<tag or digest>` with every manifest type accepted.

        On success `digest` is the registry's `Docker-Content-Digest` (an index digest for a
        multi-platform image). HEAD is used because Docker Hub does not count it as a pull.
        An error HEAD has no body, so one GET follows to read the JSON error code. Because
        distribution answers a missing *repository* with MANIFEST_UNKNOWN too, a
        `manifest_unknown` is checked against `tags/list` (`check_repository`) and becomes
        `name_unknown` when the repository itself does not exist.

        Network problems come back as a Probe; only an invalid image string raises
        (`InvalidImageReference`, a ValueError).
        """
        ref = parse_image(image) if isinstance(image, str) else image
        reference = ref.digest or ref.effective_tag
        target = _Target(ref.registry, ref.repository, reference)
        key = self._cache_key(f"head_manifest:{check_repository}", target, credentials)
        cached = self._cached(key)
        if isinstance(cached, Probe):
            return cached
        url = f"{self.settings.base_url(ref.registry)}/v2/{ref.repository}/manifests/{reference}"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            response = self._authorized("HEAD", url, target, credentials, headers=headers)
            if response.status_code >= 400:
                response = self._error_details(response, target)
            probe = self._probe(response, target, credentials, not_found=Outcome.MANIFEST_UNKNOWN)
        except _Failure as failure:
            probe = failure.probe
        if probe.outcome is Outcome.MANIFEST_UNKNOWN and check_repository:
            probe = self._refine_manifest_unknown(probe, ref, credentials)
        self._store(key, probe, probe)
        return probe

    def list_tags(
        self,
        name: ImageRef | str,
        credentials: RegistryCredentials | None = None,
        *,
        page_size: int = 1000,
        max_pages: int = 20,
    ) -> TagList:
        """All tags of a repository, following `Link: <…>; rel="next"` pagination.

        `name` is a repository as people write it (`nginx`, `registry.internal/team/app`) or an
        ImageRef; a tag in it is ignored. Next links may be relative or absolute but must stay
        on the same origin (credentials are never sent elsewhere). Failures come back in
        `TagList.probe`; `complete` tells whether every page was read.
        """
        ref = parse_image(name) if isinstance(name, str) else name
        target = _Target(ref.registry, ref.repository, None)
        key = self._cache_key(f"list_tags:{page_size}:{max_pages}", target, credentials)
        cached = self._cached(key)
        if isinstance(cached, TagList):
            return cached
        base = self.settings.base_url(ref.registry)
        url: str | None = f"{base}/v2/{ref.repository}/tags/list?n={page_size}"
        tags: list[str] = []
        probe = Probe(Outcome.HTTP_ERROR, ref.registry, ref.repository, message="no request")
        complete = True
        pages = 0
        while url is not None:
            if pages >= max_pages:
                complete = False
                log.debug("tags %s/%s: stopped after %d pages", ref.registry, ref.repository, pages)
                break
            pages += 1
            try:
                response = self._authorized("GET", url, target, credentials)
                probe = self._probe(response, target, credentials, not_found=Outcome.NAME_UNKNOWN)
            except _Failure as failure:
                probe = failure.probe
            if not probe.ok:
                complete = False
                break
            page_tags, parse_error = self._page_tags(response)
            if parse_error:
                probe = Probe(
                    Outcome.HTTP_ERROR,
                    ref.registry,
                    ref.repository,
                    status=response.status_code,
                    message=parse_error,
                )
                complete = False
                break
            tags.extend(page_tags)
            url = self._next_link(response)
        result = TagList(tuple(tags), probe, complete)
        self._store(key, result, probe)
        return result

    def repository_exists(
        self, name: ImageRef | str, credentials: RegistryCredentials | None = None
    ) -> bool | None:
        """True if `tags/list` answers, False on NAME_UNKNOWN, None when the registry did not
        say (auth, network...): the only request that tells a missing repository apart from a
        missing tag on distribution."""
        result = self.list_tags(name, credentials, page_size=1, max_pages=1)
        if result.probe.ok:
            return True
        if result.probe.outcome is Outcome.NAME_UNKNOWN:
            return False
        return None

    # -- the auth dance ----------------------------------------------------------------------
    def _authorized(
        self,
        method: str,
        url: str,
        target: _Target,
        credentials: RegistryCredentials | None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, answering a 401 challenge once (Basic retry or Bearer token).

        Raises _Failure for transport problems and token-endpoint refusals.
        """
        scope = f"repository:{target.repository}:pull" if target.repository else ""
        user = credentials.username if credentials else ""
        token_key = (target.host, scope, user)
        sent = self._preemptive_authorization(target.host, token_key, credentials)
        response = self._send(method, url, target, headers, sent)
        if response.status_code != 401:
            return response
        challenge = Challenge.from_response(response)
        if challenge is None:
            return response
        if challenge.scheme == "basic":
            with self._lock:
                self._basic_hosts.add(target.host)
            if credentials is None or (sent or "").startswith("Basic "):
                return response
            return self._send(method, url, target, headers, credentials.basic_header())
        if challenge.scheme != "bearer":
            return response
        with self._lock:
            self._tokens.pop(token_key, None)
        token = self._fetch_token(
            target, challenge, scope or challenge.params.get("scope", ""), credentials
        )
        with self._lock:
            self._tokens[token_key] = token
        return self._send(method, url, target, headers, f"Bearer {token.value}")

    def _preemptive_authorization(
        self,
        host: str,
        token_key: tuple[str, str, str],
        credentials: RegistryCredentials | None,
    ) -> str | None:
        """A cached, unexpired token, or Basic for a host known to use Basic."""
        now = time.monotonic()
        with self._lock:
            token = self._tokens.get(token_key)
            if token is not None and token.expires_at > now:
                return f"Bearer {token.value}"
            if token is not None:
                del self._tokens[token_key]
            basic = host in self._basic_hosts
        if basic and credentials is not None:
            return credentials.basic_header()
        return None

    def _fetch_token(
        self,
        target: _Target,
        challenge: Challenge,
        scope: str,
        credentials: RegistryCredentials | None,
    ) -> _Token:
        """GET realm?service=…&scope=… (Basic when credentials are given)."""
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _Failure(
                self._fail(
                    target,
                    Outcome.HTTP_ERROR,
                    "Bearer challenge without a usable realm URL",
                    status=401,
                )
            )
        registry_plain = self.settings.base_url(target.host).startswith("http://")
        if parts.scheme == "http" and not (
            registry_plain or parts.netloc in self.settings.insecure_hosts
        ):
            raise _Failure(
                self._fail(
                    target,
                    Outcome.HTTP_ERROR,
                    f"token service {parts.netloc} is plain HTTP; not sending credentials "
                    "(add it to insecure_hosts if that is intended)",
                    status=401,
                )
            )
        params = {"service": challenge.params["service"]} if "service" in challenge.params else {}
        if scope:
            params["scope"] = scope
        headers = {"Authorization": credentials.basic_header()} if credentials else {}
        client = self._client(self.settings.ca_bundle_for(parts.netloc))
        started = time.monotonic()
        try:
            response = client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            outcome, reason = classify_transport_error(exc, self.settings.http_timeout)
            log.debug("token %s for %s: %s", parts.netloc, target.host, outcome.value)
            raise _Failure(
                self._fail(target, outcome, f"token service {parts.netloc}: {reason}")
            ) from None
        log.debug(
            "token %s for %s/%s -> %s",
            parts.netloc,
            target.host,
            target.repository,
            response.status_code,
        )
        if response.status_code in (401, 403):
            what = (
                f"rejected the credentials of {_who(credentials)} (wrong username or password)"
                if credentials
                else "refused anonymous access"
            )
            outcome = Outcome.UNAUTHORIZED if response.status_code == 401 else Outcome.DENIED
            raise _Failure(
                self._fail(
                    target,
                    outcome,
                    f"token service {parts.netloc} {what}",
                    status=response.status_code,
                )
            )
        if response.status_code == 429:
            raise _Failure(
                self._fail(
                    target,
                    Outcome.RATE_LIMITED,
                    f"token service {parts.netloc} is rate limiting",
                    status=429,
                    retry_after=_retry_after(response.headers.get("retry-after")),
                )
            )
        try:
            payload = response.json() if response.status_code == 200 else None
        except ValueError:
            payload = None
        value = None
        expires_in: object = None
        if isinstance(payload, dict):
            value = payload.get("token") or payload.get("access_token")
            expires_in = payload.get("expires_in")
        if not isinstance(value, str) or not value:
            raise _Failure(
                self._fail(
                    target,
                    Outcome.HTTP_ERROR,
                    f"token service {parts.netloc} answered "
                    f"HTTP {response.status_code} without a token",
                    status=response.status_code,
                )
            )
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else float(DEFAULT_TOKEN_SECONDS)
        )
        # Renew a little early so a token does not expire between cache lookup and use.
        return _Token(value, started + lifetime - min(10.0, lifetime / 4))

    # -- HTTP --------------------------------------------------------------------------------
    def _client(self, ca_bundle: str | None) -> httpx.Client:
        with self._lock:
            client = self._clients.get(ca_bundle)
            if client is None:
                verify: ssl.SSLContext | bool = (
                    ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
                )
                client = httpx.Client(
                    verify=verify,
                    timeout=self.settings.http_timeout,
                    follow_redirects=False,
                    trust_env=self.settings.trust_env,
                    headers={"User-Agent": USER_AGENT},
                )
                self._clients[ca_bundle] = client
            return client

    def _send(
        self,
        method: str,
        url: str,
        target: _Target,
        headers: Mapping[str, str] | None,
        authorization: str | None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if authorization:
            hdrs["Authorization"] = authorization
        client = self._client(self.settings.ca_bundle_for(target.host))
        try:
            response = client.request(method, url, headers=hdrs)
        except httpx.HTTPError as exc:
            outcome, reason = classify_transport_error(exc, self.settings.http_timeout)
            log.debug("%s %s/%s: %s", method, target.host, target.repository, outcome.value)
            raise _Failure(self._fail(target, outcome, f"{target.host}: {reason}")) from None
        log.debug("%s %s/%s -> %s", method, target.host, target.repository, response.status_code)
        return response

    def _error_details(self, head: httpx.Response, target: _Target) -> httpx.Response:
        """Repeat a failed HEAD as GET (same headers) to read the JSON error code.

        Keeps the HEAD response when the GET fails at the transport level.
        """
        try:
            response = self._client(self.settings.ca_bundle_for(target.host)).request(
                "GET", head.request.url, headers=head.request.headers
            )
        except httpx.HTTPError:
            return head
        log.debug(
            "GET %s/%s (error details) -> %s", target.host, target.repository, response.status_code
        )
        if "retry-after" not in response.headers and "retry-after" in head.headers:
            response.headers["retry-after"] = head.headers["retry-after"]
        return response

    # -- interpretation ----------------------------------------------------------------------
    def _probe(
        self,
        response: httpx.Response,
        target: _Target,
        credentials: RegistryCredentials | None,
        *,
        not_found: Outcome,
    ) -> Probe:
        status = response.status_code
        where = self._where(target)
        if 200 <= status < 300:
            return Probe(
                Outcome.OK,
                target.host,
                target.repository,
                target.reference,
                status=status,
                digest=response.headers.get("docker-content-digest"),
                media_type=response.headers.get("content-type"),
                message=f"{where}: {'found' if target.reference else 'answered'}",
            )
        code, registry_message = _error_body(response)
        challenge = Challenge.from_response(response) if status == 401 else None
        insufficient = bool(challenge and challenge.insufficient_scope)
        outcome = _CODE_OUTCOME.get(code or "")
        if outcome is None:
            outcome = {
                401: Outcome.UNAUTHORIZED,
                403: Outcome.DENIED,
                404: not_found,
                429: Outcome.RATE_LIMITED,
            }.get(status, Outcome.HTTP_ERROR)
        detail = f" ({code}: {registry_message})" if code else ""
        message = {
            Outcome.MANIFEST_UNKNOWN: f"{where}: no such tag or digest{detail}",
            Outcome.NAME_UNKNOWN: f"{where}: repository not known to the registry{detail}",
            Outcome.DENIED: f"{where}: access denied for {_who(credentials)}{detail}",
            Outcome.RATE_LIMITED: f"{where}: rate limited{detail}",
        }.get(outcome, f"{where}: HTTP {status}{detail}")
        if outcome is Outcome.UNAUTHORIZED:
            if insufficient and credentials:
                message = (
                    f"{where}: {_who(credentials)} authenticated but has no pull access "
                    "(insufficient_scope: no permission, or the repository does not exist)"
                )
            elif insufficient:
                message = f"{where}: anonymous pull not allowed (insufficient_scope)"
            elif credentials:
                message = (
                    f"{where}: the registry rejected the credentials of {_who(credentials)} "
                    "(wrong username or password)"
                )
            else:
                message = f"{where}: authentication required and no credentials were given"
        return Probe(
            outcome,
            target.host,
            target.repository,
            target.reference,
            status=status,
            registry_code=code,
            retry_after=_retry_after(response.headers.get("retry-after")),
            insufficient_scope=insufficient,
            message=message,
        )

    def _refine_manifest_unknown(
        self, probe: Probe, ref: ImageRef, credentials: RegistryCredentials | None
    ) -> Probe:
        """Ask tags/list whether the repository exists behind a MANIFEST_UNKNOWN."""
        listing = self.list_tags(ref, credentials, page_size=1, max_pages=1)
        if listing.probe.outcome is not Outcome.NAME_UNKNOWN:
            return probe
        return Probe(
            Outcome.NAME_UNKNOWN,
            probe.registry,
            probe.repository,
            probe.reference,
            status=listing.probe.status,
            registry_code=listing.probe.registry_code,
            message=(
                f"{ref.registry}/{ref.repository}: repository not known to the registry "
                "(the manifest request said MANIFEST_UNKNOWN, tags/list said NAME_UNKNOWN)"
            ),
        )

    @staticmethod
    def _page_tags(response: httpx.Response) -> tuple[list[str], str | None]:
        try:
            payload = response.json()
        except ValueError:
            return [], "tags/list answered with something that is not JSON"
        if not isinstance(payload, dict):
            return [], "tags/list answered with unexpected JSON"
        raw = payload.get("tags") or []  # distribution sends null for a repository w/o tags
        if not isinstance(raw, list):
            return [], "tags/list answered with unexpected JSON"
        return [str(t) for t in raw], None

    @staticmethod
    def _next_link(response: httpx.Response) -> str | None:
        nxt = response.links.get("next")
        if not nxt or not nxt.get("url"):
            return None
        current = str(response.url)
        url = urljoin(current, nxt["url"])
        if not _same_origin(url, current):
            log.debug("tags: not following a next link to another origin")
            return None
        return url

    @staticmethod
    def _where(target: _Target) -> str:
        if target.repository is None:
            return target.host
        name = f"{target.host}/{target.repository}"
        if target.reference is None:
            return name
        sep = "@" if target.reference.startswith("sha256:") else ":"
        return f"{name}{sep}{target.reference}"

    @staticmethod
    def _fail(
        target: _Target,
        outcome: Outcome,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> Probe:
        return Probe(
            outcome,
            target.host,
            target.repository,
            target.reference,
            status=status,
            retry_after=retry_after,
            message=message,
        )

    # -- result cache ------------------------------------------------------------------------
    def _cache_key(
        self, operation: str, target: _Target, credentials: RegistryCredentials | None
    ) -> tuple[str, ...]:
        fingerprint = ""
        if credentials is not None:
            fingerprint = hmac.new(
                self._fingerprint_key, credentials.password.encode(), hashlib.sha256
            ).hexdigest()[:16]
        return (
            operation,
            target.host,
            target.repository or "",
            target.reference or "",
            credentials.username if credentials else "",
            fingerprint,
        )

    def _cached(self, key: tuple[str, ...]) -> object | None:
        if self.settings.cache_ttl <= 0:
            return None
        with self._lock:
            entry = self._results.get(key)
            if entry is None:
                return None
            expires_at, value = entry
            if expires_at <= time.monotonic():
                del self._results[key]
                return None
        log.debug("cache hit %s %s/%s", key[0], key[1], key[2])
        return value

    def _store(self, key: tuple[str, ...], value: object, probe: Probe) -> None:
        ttl = self.settings.cache_ttl
        if ttl <= 0:
            return
        if probe.retry_after is not None:
            ttl = min(ttl, probe.retry_after)  # ask again once the registry allows it
        with self._lock:
            self._results[key] = (time.monotonic() + ttl, value)
