"""The registry client's vocabulary: credentials, settings, outcomes and the answers it returns.

Why a module of its own: these are the values every other part of `bot.registry` passes around
— the transport, the authentication dance, the client, Docker Hub's quota check, pull secrets
and the investigator — and that the rest of the bot reads (`Probe`, `Outcome`). Keeping them
free of any request logic lets each of those modules depend on the vocabulary without depending
on one another (no import cycle inside the package).

Secrets: `RegistryCredentials` cannot print its password, and no type here ever holds a token
or an `Authorization` header.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bot.diagnosis.causes import Cause
from bot.diagnosis.imageref import DOCKER_HUB, DOCKER_HUB_SPELLINGS

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


def who(credentials: RegistryCredentials | None) -> str:
    """Who asked, for a message: the username only (never the password)."""
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


# -- what one request is about, and how it failed ---------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a request asks about: registry host, repository and tag/digest (as far as known).

    Internal to the package: the transport, the auth dance and the client all build their
    Probes from it, so every Probe names the same registry/repository/reference.
    """

    host: str
    repository: str | None
    reference: str | None

    @property
    def where(self) -> str:
        """`host`, `host/repo`, `host/repo:tag` or `host/repo@sha256:…`, for messages."""
        if self.repository is None:
            return self.host
        name = f"{self.host}/{self.repository}"
        if self.reference is None:
            return name
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{name}{sep}{self.reference}"

    def failed(
        self,
        outcome: Outcome,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> Probe:
        """A Probe for a request about this target that did not get a usable answer."""
        return Probe(
            outcome,
            self.host,
            self.repository,
            self.reference,
            status=status,
            retry_after=retry_after,
            message=message,
        )


class ProbeFailure(Exception):
    """Internal: carries a ready Probe out of the request machinery (never escapes the package).

    Why an exception: a transport failure or a token refusal can happen several calls deep
    (send → auth → token fetch); raising the finished Probe lets the public operations turn it
    into their return value in one `except`, so callers only ever see Probes.
    """

    def __init__(self, probe: Probe) -> None:
        super().__init__(probe.message)
        self.probe = probe
