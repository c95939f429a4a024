"""The wire under the registry client: pooled httpx clients with per-host TLS and timeouts.

Why a module of its own: both the authentication dance (token requests to a realm on another
host) and the client (the `/v2/` requests) must go through the same pools, the same CA bundle
per host and the same timeouts, and must turn a transport failure into the same Probe. Keeping
that here lets `auth` and `client` share it without importing each other.

Also here: `classify_transport_error` (DNS vs refusal vs timeout vs certificate, from the
chained causes httpx keeps), used by Docker Hub's quota check too, and `parse_retry_after`.
Neither ever puts a request header into a message: an `Authorization` header is a secret.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping

import httpx

from bot.registry.model import USER_AGENT, Outcome, ProbeFailure, RegistrySettings, Target

log = logging.getLogger(__name__)


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


def parse_retry_after(value: str | None) -> float | None:
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


class Transport:
    """One pooled `httpx.Client` per CA bundle, built from `RegistrySettings`; thread-safe.

    Why one client per CA bundle: httpx fixes `verify` per client, and a host's own CA must not
    be trusted for any other host. Redirects are never followed (a redirect must not carry the
    `Authorization` header elsewhere).
    """

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self._clients: dict[str | None, httpx.Client] = {}
        self._lock = threading.Lock()

    def client(self, ca_bundle: str | None) -> httpx.Client:
        """The pooled client that trusts `ca_bundle` (None: the default trust store)."""
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

    def client_for(self, host: str) -> httpx.Client:
        """The pooled client with the CA bundle configured for `host`."""
        return self.client(self.settings.ca_bundle_for(host))

    def send(
        self,
        method: str,
        url: str,
        target: Target,
        headers: Mapping[str, str] | None,
        authorization: str | None,
    ) -> httpx.Response:
        """One request to `target.host`; raises ProbeFailure when no HTTP answer arrives."""
        hdrs = dict(headers or {})
        if authorization:
            hdrs["Authorization"] = authorization
        client = self.client_for(target.host)
        try:
            response = client.request(method, url, headers=hdrs)
        except httpx.HTTPError as exc:
            outcome, reason = classify_transport_error(exc, self.settings.http_timeout)
            log.debug("%s %s/%s: %s", method, target.host, target.repository, outcome.value)
            raise ProbeFailure(target.failed(outcome, f"{target.host}: {reason}")) from None
        log.debug("%s %s/%s -> %s", method, target.host, target.repository, response.status_code)
        return response

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
