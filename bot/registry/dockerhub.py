"""Docker Hub pull quota, read exactly the way Docker documents it.

Why: "toomanyrequests" on a node says the quota is gone *now*; the operator's next questions are
"how many pulls are left, in which window, and whose quota is it?". Docker's documented check
("Docker Hub pull usage and limits" → "View pull rate and limit") is:

1. `GET https://auth.docker.io/token?service=registry.docker.io&scope=repository:ratelimitpreview/test:pull`
   (with `--user name:password` for an account's quota, anonymous for the IP's), and
2. `HEAD https://registry-1.docker.io/v2/ratelimitpreview/test/manifests/latest` with the token.

Docker: "using GET emulates a real pull and counts towards the limit; using HEAD will not", so
this module only ever sends HEAD to the registry. The answer carries
`ratelimit-limit: 100;w=21600` (100 pulls per 21600 s window), `ratelimit-remaining: 76;w=21600`
and `docker-ratelimit-source` (the client IP for anonymous pulls, the account id otherwise). No
ratelimit headers means the account/IP is not rate-limited (paid plan or an unlimited
organisation/IP), which is reported as `unlimited`, not as an error.

Plain httpx rather than `RegistryClient`: this is a fixed two-request recipe against fixed
endpoints whose *headers* are the result; a generic probe would have to expose them anyway.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.registry.model import DEFAULT_TIMEOUT, MANIFEST_ACCEPT, USER_AGENT, RegistryCredentials
from bot.registry.transport import classify_transport_error

log = logging.getLogger(__name__)

DOCKER_HUB_AUTH_URL = "https://auth.docker.io/token"
DOCKER_HUB_REGISTRY_URL = "https://registry-1.docker.io"
DOCKER_HUB_SERVICE = "registry.docker.io"
#: The repository Docker's documentation uses for the check (public, tag `latest`).
RATELIMIT_PREVIEW_REPOSITORY = "ratelimitpreview/test"

_RATE_VALUE = re.compile(r"^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?")


def parse_ratelimit(value: str | None) -> tuple[int | None, int | None]:
    """`"100;w=21600"` → (100, 21600); (None, None) when absent or unreadable."""
    if not value:
        return None, None
    m = _RATE_VALUE.match(value)
    if m is None:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def _window_words(seconds: int | None) -> str:
    if seconds is None:
        return "current"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}-hour"
    if seconds % 60 == 0:
        return f"{seconds // 60}-minute"
    return f"{seconds}-second"


@dataclass(frozen=True)
class Quota:
    """Docker Hub's answer about one pull quota (an IP's or an account's).

    `authenticated` is whether the check ran with credentials (the figures are then the
    account's). `unlimited` is True when Docker Hub sent no ratelimit headers. `error` is a
    short safe reason when the quota could not be read; the figures are None then.
    `username` is kept only to word `describe()`.
    """

    limit: int | None = None
    remaining: int | None = None
    window_seconds: int | None = None
    source: str | None = None
    authenticated: bool = False
    unlimited: bool = False
    error: str | None = None
    status: int | None = None
    username: str | None = None

    @property
    def ok(self) -> bool:
        """The quota was read (limited or not)."""
        return self.error is None

    def describe(self) -> str:
        """One plain-words line, saying whose quota the figure is."""
        whose = (
            f"Docker Hub account {self.username!r}"
            if self.authenticated and self.username
            else "the Docker Hub account"
            if self.authenticated
            else "this bot's outbound IP"
        )
        if self.error is not None:
            return f"Could not read the Docker Hub pull quota for {whose}: {self.error}."
        if self.unlimited:
            return (
                f"Docker Hub sent no rate-limit headers for {whose}: it is not pull-rate-limited "
                "(a paid plan, or an IP/organisation Docker does not limit)."
            )
        window = _window_words(self.window_seconds)
        figure = f"{self.remaining} of {self.limit} pulls left in the {window} window"
        if self.authenticated:
            return f"{figure} for {whose} (shared by everything that pulls with this account)."
        source = f" ({self.source})" if self.source else ""
        return (
            f"{figure} for {whose}{source}, anonymous pulls. The cluster's nodes share this "
            "figure only if they reach Docker Hub through the same NAT/egress IP; otherwise "
            "each node's IP has its own quota."
        )


def dockerhub_quota(
    credentials: RegistryCredentials | None = None,
    *,
    auth_url: str = DOCKER_HUB_AUTH_URL,
    registry_url: str = DOCKER_HUB_REGISTRY_URL,
    repository: str = RATELIMIT_PREVIEW_REPOSITORY,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    ca_bundle: str | Path | None = None,
) -> Quota:
    """Read the pull quota: token request, then `HEAD …/manifests/latest` (uses no quota).

    Anonymous checks report the quota of the IP this bot leaves from; with `credentials` the
    account's. Endpoints are configurable for mirrors and tests. Never raises for network or
    HTTP problems: they come back in `Quota.error`.
    """
    authenticated = credentials is not None
    user = credentials.username if credentials else None
    http_timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
    )

    def failed(reason: str, status: int | None = None) -> Quota:
        log.debug("docker hub quota: %s (status %s)", reason, status)
        return Quota(authenticated=authenticated, error=reason, status=status, username=user)

    headers = {"Authorization": credentials.basic_header()} if credentials else {}
    params = {"service": DOCKER_HUB_SERVICE, "scope": f"repository:{repository}:pull"}
    with httpx.Client(
        verify=verify, timeout=http_timeout, headers={"User-Agent": USER_AGENT}
    ) as client:
        try:
            token_response = client.get(auth_url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            _, reason = classify_transport_error(exc, http_timeout)
            return failed(f"token service unreachable: {reason}")
        log.debug("docker hub token -> %s", token_response.status_code)
        if token_response.status_code == 401:
            return failed("Docker Hub rejected the username or password", 401)
        if token_response.status_code != 200:
            return failed(
                f"token service answered HTTP {token_response.status_code}",
                token_response.status_code,
            )
        try:
            payload = token_response.json()
        except ValueError:
            payload = None
        token = (
            (payload.get("token") or payload.get("access_token"))
            if isinstance(payload, dict)
            else None
        )
        if not isinstance(token, str) or not token:
            return failed("token service answered without a token", 200)

        url = f"{registry_url.rstrip('/')}/v2/{repository}/manifests/latest"
        try:
            response = client.head(
                url, headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}
            )
        except httpx.HTTPError as exc:
            _, reason = classify_transport_error(exc, http_timeout)
            return failed(f"registry unreachable: {reason}")
    log.debug("docker hub HEAD %s -> %s", repository, response.status_code)

    limit, window = parse_ratelimit(response.headers.get("ratelimit-limit"))
    remaining, remaining_window = parse_ratelimit(response.headers.get("ratelimit-remaining"))
    source = response.headers.get("docker-ratelimit-source")
    if response.status_code == 429:
        # Over the limit: the answer still says whose quota and how big it is.
        return Quota(
            limit=limit,
            remaining=remaining if remaining is not None else 0,
            window_seconds=window or remaining_window,
            source=source,
            authenticated=authenticated,
            status=429,
            username=user,
        )
    if response.status_code != 200:
        return failed(f"registry answered HTTP {response.status_code}", response.status_code)
    if limit is None and remaining is None:
        return Quota(authenticated=authenticated, unlimited=True, status=200, username=user)
    return Quota(
        limit=limit,
        remaining=remaining,
        window_seconds=window or remaining_window,
        source=source,
        authenticated=authenticated,
        status=200,
        username=user,
    )
