"""The registry authentication dance: challenge → Basic retry or Bearer token → retry.

Why a module of its own: this is the part of the distribution protocol with the most rules and
the most secrets — parsing `WWW-Authenticate` (quoted scopes with commas, `insufficient_scope`),
asking a token service (which may live on another host, and must not receive credentials over
plain HTTP unless configured), caching tokens per host/scope/user until shortly before they
expire, and remembering which hosts use Basic so later requests send it up front. The client
only asks `Authenticator.send` for a response and never sees a token.

Secrets: tokens live in `_Token` (value hidden from `repr`) and in the cache only; messages name
the token host and the username, never a token, a password or an `Authorization` header.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from bot.registry.model import Outcome, ProbeFailure, RegistryCredentials, Target, who
from bot.registry.transport import Transport, classify_transport_error, parse_retry_after

log = logging.getLogger(__name__)

#: The distribution token spec's default lifetime when a token server omits `expires_in`.
DEFAULT_TOKEN_SECONDS = 60
#: Bearer tokens kept at most (one per registry, repository and user: pods with a new image
#: each must not grow the cache without bound).
MAX_TOKENS = 1_024

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


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


class Authenticator:
    """Sends registry requests with whatever authorization the registry asks for; thread-safe.

    Holds the bearer-token cache (keyed by host, scope and username) and the set of hosts known
    to answer with a Basic challenge. Requests go through the shared `Transport`.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._basic_hosts: set[str] = set()
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop every cached token and every host remembered as Basic."""
        with self._lock:
            self._tokens.clear()
            self._basic_hosts.clear()

    def send(
        self,
        method: str,
        url: str,
        target: Target,
        credentials: RegistryCredentials | None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, answering a 401 challenge once (Basic retry or Bearer token).

        Raises ProbeFailure for transport problems and token-endpoint refusals.
        """
        scope = f"repository:{target.repository}:pull" if target.repository else ""
        user = credentials.username if credentials else ""
        token_key = (target.host, scope, user)
        sent = self._preemptive_authorization(target.host, token_key, credentials)
        response = self.transport.send(method, url, target, headers, sent)
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
            return self.transport.send(method, url, target, headers, credentials.basic_header())
        if challenge.scheme != "bearer":
            return response
        with self._lock:
            self._tokens.pop(token_key, None)
        token = self._fetch_token(
            target, challenge, scope or challenge.params.get("scope", ""), credentials
        )
        with self._lock:
            self._tokens[token_key] = token
            if len(self._tokens) > MAX_TOKENS:  # expired ones first, then the oldest
                now = time.monotonic()
                for stale in [k for k, t in self._tokens.items() if t.expires_at <= now]:
                    del self._tokens[stale]
                while len(self._tokens) > MAX_TOKENS:
                    del self._tokens[next(iter(self._tokens))]
        return self.transport.send(method, url, target, headers, f"Bearer {token.value}")

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
        target: Target,
        challenge: Challenge,
        scope: str,
        credentials: RegistryCredentials | None,
    ) -> _Token:
        """GET realm?service=…&scope=… (Basic when credentials are given)."""
        settings = self.transport.settings
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProbeFailure(
                target.failed(
                    Outcome.HTTP_ERROR,
                    "Bearer challenge without a usable realm URL",
                    status=401,
                )
            )
        registry_plain = settings.base_url(target.host).startswith("http://")
        if parts.scheme == "http" and not (
            registry_plain or parts.netloc in settings.insecure_hosts
        ):
            raise ProbeFailure(
                target.failed(
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
        client = self.transport.client_for(parts.netloc)
        started = time.monotonic()
        try:
            response = client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            outcome, reason = classify_transport_error(exc, settings.http_timeout)
            log.debug("token %s for %s: %s", parts.netloc, target.host, outcome.value)
            raise ProbeFailure(
                target.failed(outcome, f"token service {parts.netloc}: {reason}")
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
                f"rejected the credentials of {who(credentials)} (wrong username or password)"
                if credentials
                else "refused anonymous access"
            )
            outcome = Outcome.UNAUTHORIZED if response.status_code == 401 else Outcome.DENIED
            raise ProbeFailure(
                target.failed(
                    outcome,
                    f"token service {parts.netloc} {what}",
                    status=response.status_code,
                )
            )
        if response.status_code == 429:
            raise ProbeFailure(
                target.failed(
                    Outcome.RATE_LIMITED,
                    f"token service {parts.netloc} is rate limiting",
                    status=429,
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
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
            raise ProbeFailure(
                target.failed(
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
