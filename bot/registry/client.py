"""A small OCI distribution (Docker Registry v2) client that asks registries what the kubelet saw.

Why it exists: the diagnosis engine reads the kubelet's words; this client checks them against
the registry itself ("does the tag exist?", "do these pull credentials work?", "is the registry
reachable from here?") and turns every answer into a `Probe` whose `cause` speaks the same
vocabulary as the diagnosis (`bot.diagnosis.causes.Cause`).

This module holds the registry API itself: the operations (`ping`, `head_manifest`,
`list_tags`), reading a response into a Probe (status, distribution error code, challenge
flags), `Link` pagination, and the result cache's use. It leans on, from the bottom up:
`model` (credentials, settings, Probe/Outcome), `transport` (pooled connections, TLS per host,
timeouts, transport failures), `auth` (the challenge → token dance) and `cache`.

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
written in this package, on `httpx`: typed, separate connect/read timeouts, an `SSLContext` per
client (one client per CA bundle), `Response.links`, and a clean exception hierarchy whose
chained causes tell DNS, refusal, timeout and certificate failures apart.

Secrets: passwords, dockerconfigjson `auth` strings, bearer tokens and `Authorization` headers
never reach a log record, a `Probe`, a repr or an exception message. Logging is debug level with
host / repository / status only.
"""

from __future__ import annotations

import json
import logging
from types import TracebackType
from typing import Self
from urllib.parse import urljoin, urlsplit

import httpx

from bot.config import Settings
from bot.diagnosis.imageref import ImageRef, parse_image
from bot.registry.auth import Authenticator, Challenge
from bot.registry.cache import CacheKey, ResultCache
from bot.registry.model import (
    MANIFEST_ACCEPT,
    Outcome,
    Probe,
    ProbeFailure,
    RegistryCredentials,
    RegistrySettings,
    TagList,
    Target,
    who,
)
from bot.registry.transport import Transport, parse_retry_after

log = logging.getLogger(__name__)

#: Distribution error codes (docs/spec/api.md) that decide the outcome regardless of status.
_CODE_OUTCOME: dict[str, Outcome] = {
    "MANIFEST_UNKNOWN": Outcome.MANIFEST_UNKNOWN,
    "NAME_UNKNOWN": Outcome.NAME_UNKNOWN,
    "UNAUTHORIZED": Outcome.UNAUTHORIZED,
    "DENIED": Outcome.DENIED,
    "TOOMANYREQUESTS": Outcome.RATE_LIMITED,
}


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


def _same_origin(a: str, b: str) -> bool:
    sa, sb = urlsplit(a), urlsplit(b)
    return (sa.scheme, sa.netloc) == (sb.scheme, sb.netloc)


class RegistryClient:
    """Synchronous, thread-safe registry client for diagnosis probes.

    Why synchronous: each probe is a handful of short requests bounded by small timeouts, and
    the callers (CLI, handlers running diagnoses in worker threads) are synchronous. Close it
    (or use it as a context manager) to release pooled connections.
    """

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        self._transport = Transport(self.settings)
        self._auth = Authenticator(self._transport)
        self._cache = ResultCache(self.settings.cache_ttl)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close every pooled connection."""
        self._transport.close()

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
        self._cache.clear()
        if tokens:
            self._auth.forget()

    # -- public operations -------------------------------------------------------------------
    def ping(self, registry: str, credentials: RegistryCredentials | None = None) -> Probe:
        """`GET /v2/`: is the registry there, and does it want authentication?

        `unauthorized` here still means the registry is reachable (`probe.reachable`).
        """
        target = Target(registry, None, None)
        key = self._cache.key("ping", target, credentials)
        cached = self._cache.claim(key)
        if isinstance(cached, Probe):
            return cached
        try:
            url = f"{self.settings.base_url(registry)}/v2/"
            try:
                response = self._auth.send("GET", url, target, credentials)
                probe = self._probe(response, target, credentials,
                                    not_found=Outcome.HTTP_ERROR)
            except ProbeFailure as failure:
                probe = failure.probe
            self._cache.put(key, probe, probe)
            return probe
        finally:
            self._cache.release(key)

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
        target = Target(ref.registry, ref.repository, reference)
        key = self._cache.key(f"head_manifest:{check_repository}", target, credentials)
        cached = self._cache.claim(key)  # the same question in flight: its answer
        if isinstance(cached, Probe):
            return cached
        try:
            return self._head_manifest(ref, reference, target, credentials, check_repository,
                                       key)
        finally:
            self._cache.release(key)

    def _head_manifest(self, ref: ImageRef, reference: str, target: Target,
                       credentials: RegistryCredentials | None, check_repository: bool,
                       key: CacheKey) -> Probe:
        url = f"{self.settings.base_url(ref.registry)}/v2/{ref.repository}/manifests/{reference}"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            response = self._auth.send("HEAD", url, target, credentials, headers=headers)
            if response.status_code >= 400:
                response = self._error_details(response, target)
            probe = self._probe(response, target, credentials, not_found=Outcome.MANIFEST_UNKNOWN)
        except ProbeFailure as failure:
            probe = failure.probe
        if probe.outcome is Outcome.MANIFEST_UNKNOWN and check_repository:
            probe = self._refine_manifest_unknown(probe, ref, credentials)
        self._cache.put(key, probe, probe)
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
        target = Target(ref.registry, ref.repository, None)
        key = self._cache.key(f"list_tags:{page_size}:{max_pages}", target, credentials)
        cached = self._cache.claim(key)
        if isinstance(cached, TagList):
            return cached
        try:
            return self._list_tags(ref, target, credentials, page_size, max_pages, key)
        finally:
            self._cache.release(key)

    def _list_tags(self, ref: ImageRef, target: Target,
                   credentials: RegistryCredentials | None, page_size: int, max_pages: int,
                   key: CacheKey) -> TagList:
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
                response = self._auth.send("GET", url, target, credentials)
                probe = self._probe(response, target, credentials, not_found=Outcome.NAME_UNKNOWN)
            except ProbeFailure as failure:
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
        self._cache.put(key, result, probe)
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

    # -- HTTP --------------------------------------------------------------------------------
    def _error_details(self, head: httpx.Response, target: Target) -> httpx.Response:
        """Repeat a failed HEAD as GET (same headers) to read the JSON error code.

        Keeps the HEAD response when the GET fails at the transport level.
        """
        try:
            response = self._transport.client_for(target.host).request(
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
        target: Target,
        credentials: RegistryCredentials | None,
        *,
        not_found: Outcome,
    ) -> Probe:
        status = response.status_code
        where = target.where
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
            Outcome.DENIED: f"{where}: access denied for {who(credentials)}{detail}",
            Outcome.RATE_LIMITED: f"{where}: rate limited{detail}",
        }.get(outcome, f"{where}: HTTP {status}{detail}")
        if outcome is Outcome.UNAUTHORIZED:
            if insufficient and credentials:
                message = (
                    f"{where}: {who(credentials)} authenticated but has no pull access "
                    "(insufficient_scope: no permission, or the repository does not exist)"
                )
            elif insufficient:
                message = f"{where}: anonymous pull not allowed (insufficient_scope)"
            elif credentials:
                message = (
                    f"{where}: the registry rejected the credentials of {who(credentials)} "
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
            retry_after=parse_retry_after(response.headers.get("retry-after")),
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


def client_from_settings(settings: Settings) -> RegistryClient:
    """The RegistryClient the bot's configuration describes (timeout, CA bundles, insecure
    hosts, endpoint overrides); the caller closes it."""
    return RegistryClient(
        RegistrySettings(
            timeout=settings.registry_timeout_seconds,
            ca_bundles=dict(settings.registry_ca_bundles),
            insecure_hosts=frozenset(settings.registry_insecure_hosts),
            endpoints=dict(settings.registry_endpoints),
        )
    )
