"""bot.registry.client against real distribution 2.8 servers and the wire-format stubs.

Why real servers: the client's whole value is interpreting what registries actually send
(challenges, error codes, TLS failures, token-scope refusals), so nothing of the client is
mocked; the servers come from tests/support (see its README for the observed behaviour).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from bot.diagnosis.causes import Cause
from bot.diagnosis.imageref import parse_image
from bot.registry.client import RegistryClient
from bot.registry.dockerhub import dockerhub_quota
from bot.registry.model import (
    MANIFEST_ACCEPT,
    Outcome,
    Probe,
    RegistryCredentials,
    RegistrySettings,
)
from tests.support.registry import (
    DEPLOY_PASSWORD,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Credentials,
    Platform,
    RegistryServer,
    push_image,
    push_index,
)
from tests.support.stubs import (
    HUB_PASSWORD,
    HUB_USER,
    PAGINATED_TAGS,
    BlackholeServer,
    DockerHubStub,
    PaginatingTagsStub,
    RateLimitedRegistryStub,
)
from tests.support.tokens import TokenServer

pytest_plugins = ["tests.support.fixtures"]
pytestmark = pytest.mark.integration

ClientFactory = Callable[..., RegistryClient]
PLATFORMS: list[Platform] = [("linux", "amd64"), ("linux", "arm64", "v8")]


def creds(c: Credentials | None) -> RegistryCredentials:
    assert c is not None
    return RegistryCredentials(c.username, c.password)


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """RegistryClient factory; plain-HTTP test registries are listed in insecure_hosts."""
    clients: list[RegistryClient] = []

    def factory(*insecure: str, **kwargs: object) -> RegistryClient:
        settings = RegistrySettings(insecure_hosts=set(insecure), **kwargs)  # type: ignore[arg-type]
        client = RegistryClient(settings)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


# -- manifests ----------------------------------------------------------------------------------


def test_present_tag_gives_the_pushed_digest(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    digest = push_image(registry_plain, unique_repo, "v1")
    probe = make_client(registry_plain.host).head_manifest(
        f"{registry_plain.host}/{unique_repo}:v1"
    )
    assert probe.outcome is Outcome.OK, probe.message
    assert probe.ok and probe.cause is None and probe.status == 200
    assert probe.digest == digest
    assert probe.registry == registry_plain.host and probe.repository == unique_repo


def test_docker_schema2_manifest_is_found(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    # Without the Accept header distribution 2.8 answers this with 400 MANIFEST_INVALID.
    digest = push_image(registry_plain, unique_repo, "v1", media_type=DOCKER_MANIFEST)
    probe = make_client(registry_plain.host).head_manifest(
        f"{registry_plain.host}/{unique_repo}:v1"
    )
    assert (probe.outcome, probe.digest) == (Outcome.OK, digest)
    assert probe.media_type == DOCKER_MANIFEST


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_multi_platform_index_gives_the_index_digest(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory, media_type: str
) -> None:
    digest = push_index(registry_plain, unique_repo, "multi", PLATFORMS, media_type=media_type)
    ref = parse_image(f"{registry_plain.host}/{unique_repo}:multi")
    probe = make_client(registry_plain.host).head_manifest(ref)
    assert (probe.outcome, probe.digest, probe.media_type) == (Outcome.OK, digest, media_type)


def test_digest_reference(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    digest = push_image(registry_plain, unique_repo, "v1")
    client = make_client(registry_plain.host)
    probe = client.head_manifest(f"{registry_plain.host}/{unique_repo}@{digest}")
    assert (probe.outcome, probe.digest, probe.reference) == (Outcome.OK, digest, digest)
    missing = "sha256:" + "0" * 64
    gone = client.head_manifest(f"{registry_plain.host}/{unique_repo}@{missing}")
    assert (gone.outcome, gone.cause) == (Outcome.MANIFEST_UNKNOWN, Cause.TAG_NOT_FOUND)


def test_missing_tag_is_manifest_unknown(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    push_image(registry_plain, unique_repo, "v1")
    probe = make_client(registry_plain.host).head_manifest(
        f"{registry_plain.host}/{unique_repo}:lates"
    )
    assert probe.outcome is Outcome.MANIFEST_UNKNOWN
    assert probe.cause is Cause.TAG_NOT_FOUND
    assert probe.status == 404
    assert probe.registry_code == "MANIFEST_UNKNOWN"  # read by the GET after the body-less HEAD
    assert "lates" in probe.message


def test_missing_repository_is_name_unknown(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    client = make_client(registry_plain.host)
    name = f"{registry_plain.host}/{unique_repo}"

    tags = client.list_tags(name)
    assert tags.probe.outcome is Outcome.NAME_UNKNOWN
    assert tags.probe.registry_code == "NAME_UNKNOWN"
    assert tags.probe.cause is Cause.REPOSITORY_NOT_FOUND
    assert tags.tags == () and not tags.ok
    assert client.repository_exists(name) is False

    # distribution says MANIFEST_UNKNOWN for the manifest; tags/list turns it into NAME_UNKNOWN
    probe = client.head_manifest(f"{name}:v1")
    assert (probe.outcome, probe.cause) == (Outcome.NAME_UNKNOWN, Cause.REPOSITORY_NOT_FOUND)
    raw = client.head_manifest(f"{name}:v1", check_repository=False)
    assert raw.outcome is Outcome.MANIFEST_UNKNOWN

    push_image(registry_plain, unique_repo, "v1")
    client.clear_cache()
    assert client.repository_exists(name) is True
    assert client.list_tags(name).tags == ("v1",)


# -- Basic auth ---------------------------------------------------------------------------------


def test_basic_auth(
    registry_auth: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    digest = push_image(registry_auth, unique_repo, "v1")
    image = f"{registry_auth.host}/{unique_repo}:v1"
    right = creds(registry_auth.credentials)
    wrong = RegistryCredentials(right.username, "not-the-password")

    anonymous = make_client(registry_auth.host).head_manifest(image)
    assert (anonymous.outcome, anonymous.cause) == (Outcome.UNAUTHORIZED, Cause.AUTH_REQUIRED)
    assert anonymous.status == 401 and not anonymous.insufficient_scope
    assert "no credentials" in anonymous.message

    bad = make_client(registry_auth.host).head_manifest(image, wrong)
    assert (bad.outcome, bad.status, bad.insufficient_scope) == (Outcome.UNAUTHORIZED, 401, False)
    assert "wrong username or password" in bad.message

    client = make_client(registry_auth.host)
    good = client.head_manifest(image, right)
    assert (good.outcome, good.digest) == (Outcome.OK, digest), good.message
    # the host is now known to use Basic: credentials are sent up front, still correct
    assert client.list_tags(f"{registry_auth.host}/{unique_repo}", right).tags == ("v1",)
    assert client.head_manifest(image, wrong).outcome is Outcome.UNAUTHORIZED


def test_ping(
    registry_plain: RegistryServer, registry_auth: RegistryServer, make_client: ClientFactory
) -> None:
    client = make_client(registry_plain.host, registry_auth.host)
    assert client.ping(registry_plain.host).outcome is Outcome.OK
    locked = client.ping(registry_auth.host)
    assert (locked.outcome, locked.reachable) == (Outcome.UNAUTHORIZED, True)
    assert client.ping(registry_auth.host, creds(registry_auth.credentials)).ok


# -- token auth ---------------------------------------------------------------------------------


def _token_requests(token_server: TokenServer, repo: str) -> int:
    return sum(1 for r in token_server.requests if any(repo in s for s in r.query.get("scope", [])))


def test_token_auth(
    registry_token: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    suffix = str(time.monotonic_ns())
    team, private, public = f"team/app-{suffix}", f"private/app-{suffix}", f"public/app-{suffix}"
    digest = push_image(registry_token, team, "v1")
    push_image(registry_token, private, "v1")
    push_image(registry_token, public, "v1")
    right = creds(registry_token.credentials)
    host = registry_token.host

    anonymous = make_client(host).head_manifest(f"{host}/{team}:v1")
    assert (anonymous.outcome, anonymous.cause) == (Outcome.UNAUTHORIZED, Cause.AUTH_REQUIRED)
    assert anonymous.insufficient_scope and anonymous.status == 401

    good = make_client(host).head_manifest(f"{host}/{team}:v1", right)
    assert (good.outcome, good.digest) == (Outcome.OK, digest), good.message

    assert make_client(host).head_manifest(f"{host}/{public}:v1").ok  # anonymous may pull public/

    no_access = make_client(host).head_manifest(f"{host}/{private}:v1", right)
    assert no_access.outcome is Outcome.UNAUTHORIZED
    assert no_access.insufficient_scope is True
    assert no_access.registry_code == "UNAUTHORIZED"
    assert "no pull access" in no_access.message

    wrong = make_client(host).head_manifest(
        f"{host}/{team}:v1", RegistryCredentials(right.username, "wrong")
    )
    assert (wrong.outcome, wrong.insufficient_scope) == (Outcome.UNAUTHORIZED, False)
    assert "token service" in wrong.message and "wrong username or password" in wrong.message


def test_token_is_cached_per_scope(
    registry_token: RegistryServer, token_server: TokenServer, make_client: ClientFactory
) -> None:
    repo = f"team/cached-{time.monotonic_ns()}"
    push_image(registry_token, repo, "v1")
    push_image(registry_token, repo, "v2")
    right = creds(registry_token.credentials)
    client = make_client(registry_token.host)
    before = _token_requests(token_server, repo)

    assert client.head_manifest(f"{registry_token.host}/{repo}:v1", right).ok
    assert _token_requests(token_server, repo) == before + 1
    # another tag (no result-cache hit), same scope: the cached token is sent up front
    assert client.head_manifest(f"{registry_token.host}/{repo}:v2", right).ok
    assert client.list_tags(f"{registry_token.host}/{repo}", right).tags == ("v1", "v2")
    assert _token_requests(token_server, repo) == before + 1

    client.clear_cache(tokens=True)
    assert client.head_manifest(f"{registry_token.host}/{repo}:v1", right).ok
    assert _token_requests(token_server, repo) == before + 2


# -- TLS and transport ------------------------------------------------------------------------


def test_tls_needs_the_ca_bundle(
    registry_tls: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    digest = push_image(registry_tls, unique_repo, "v1")
    image = f"{registry_tls.host}/{unique_repo}:v1"
    assert registry_tls.ca_path is not None

    trusted = make_client(ca_bundles={registry_tls.host: registry_tls.ca_path}).head_manifest(image)
    assert (trusted.outcome, trusted.digest) == (Outcome.OK, digest), trusted.message

    untrusted = make_client().head_manifest(image)
    assert (untrusted.outcome, untrusted.cause) == (Outcome.TLS_UNTRUSTED, Cause.TLS_UNTRUSTED)
    assert untrusted.status is None and "certificate" in untrusted.message


def test_plain_http_only_for_insecure_hosts(
    registry_plain: RegistryServer, unique_repo: str, make_client: ClientFactory
) -> None:
    push_image(registry_plain, unique_repo, "v1")
    image = f"{registry_plain.host}/{unique_repo}:v1"
    # not configured: the client speaks HTTPS to a plain-HTTP port and says so
    probe = make_client().head_manifest(image)
    assert (probe.outcome, probe.cause) == (Outcome.TLS_UNTRUSTED, Cause.TLS_UNTRUSTED)
    assert "plain HTTP" in probe.message
    assert make_client(registry_plain.host).head_manifest(image).ok
    with pytest.raises(ValueError, match="insecure_hosts"):
        RegistrySettings(endpoints={"registry.internal": registry_plain.url})


def test_refused_port_is_unreachable(refused_port: int, make_client: ClientFactory) -> None:
    host = f"127.0.0.1:{refused_port}"
    probe = make_client(host).head_manifest(f"{host}/team/app:v1")
    assert (probe.outcome, probe.cause) == (Outcome.UNREACHABLE, Cause.NETWORK_UNREACHABLE)
    assert probe.status is None and "refused" in probe.message


def test_blackhole_times_out_quickly(
    blackhole: BlackholeServer, make_client: ClientFactory
) -> None:
    client = make_client(blackhole.host, timeout=httpx.Timeout(0.5, connect=0.5))
    started = time.monotonic()
    probe = client.head_manifest(f"{blackhole.host}/team/app:v1")
    elapsed = time.monotonic() - started
    assert (probe.outcome, probe.cause) == (Outcome.UNREACHABLE, Cause.NETWORK_UNREACHABLE)
    assert "timeout" in probe.message
    assert blackhole.connections >= 1  # it did connect: this is a read timeout, not a refusal
    assert elapsed < 2.0


def test_unknown_host_is_dns_failure(make_client: ClientFactory) -> None:
    probe = make_client().ping("registry.does-not-exist.invalid")
    assert (probe.outcome, probe.cause) == (Outcome.DNS_FAILURE, Cause.DNS_FAILURE)


def test_rate_limited(
    rate_limited_stub: RateLimitedRegistryStub, make_client: ClientFactory
) -> None:
    host = rate_limited_stub.host
    probe = make_client(host).head_manifest(f"{host}/library/nginx:1.27")
    assert (probe.outcome, probe.cause) == (Outcome.RATE_LIMITED, Cause.RATE_LIMITED)
    assert probe.status == 429 and probe.retry_after == 2
    assert probe.registry_code == "TOOMANYREQUESTS"
    heads = [r for r in rate_limited_stub.requests if r.method == "HEAD"]
    assert heads and heads[0].headers.get("accept") == MANIFEST_ACCEPT


# -- tags ---------------------------------------------------------------------------------------


def test_pagination_collects_every_page(
    paginating_tags_stub: PaginatingTagsStub, make_client: ClientFactory
) -> None:
    host = paginating_tags_stub.host
    result = make_client(host).list_tags(f"{host}/team/app", page_size=2)
    assert result.ok and result.tags == PAGINATED_TAGS
    pages = [r for r in paginating_tags_stub.requests if r.path.endswith("/tags/list")]
    assert [r.query.get("last") for r in pages] == [None, ["b"], ["d"]]

    capped = make_client(host).list_tags(f"{host}/team/app", page_size=2, max_pages=2)
    assert (capped.tags, capped.complete, capped.ok) == (("a", "b", "c", "d"), False, False)

    missing = make_client(host).list_tags(f"{host}/team/nope")
    assert missing.probe.outcome is Outcome.NAME_UNKNOWN


def test_absolute_next_links_are_followed(make_client: ClientFactory) -> None:
    class AbsoluteLinks(PaginatingTagsStub):
        class Handler(PaginatingTagsStub.Handler):
            def send_raw(self, status, body=b"", headers=None, **kw):  # type: ignore[no-untyped-def]
                hdrs = dict(headers or {})
                if "Link" in hdrs:
                    hdrs["Link"] = hdrs["Link"].replace("</v2/", f"<{self.server.owner.url}/v2/")
                super().send_raw(status, body, hdrs, **kw)

        handler = Handler

    with AbsoluteLinks({"team/app": PAGINATED_TAGS}) as stub:
        result = make_client(stub.host).list_tags(f"{stub.host}/team/app", page_size=3)
        assert result.ok and result.tags == PAGINATED_TAGS
        assert len([r for r in stub.requests if r.path.endswith("/tags/list")]) == 2


# -- result cache ---------------------------------------------------------------------------


def _hub_client(make_client: ClientFactory, hub: DockerHubStub, **kw: object) -> RegistryClient:
    return make_client("docker.io", endpoints={"docker.io": hub.url}, **kw)


def test_identical_calls_are_cached(
    dockerhub_stub: DockerHubStub,
    paginating_tags_stub: PaginatingTagsStub,
    make_client: ClientFactory,
) -> None:
    client = _hub_client(make_client, dockerhub_stub)
    first = client.head_manifest("ratelimitpreview/test")  # Docker Hub via the Bearer dance
    assert (
        first.ok and first.registry == "docker.io" and first.repository == "ratelimitpreview/test"
    )
    seen = len(dockerhub_stub.requests)
    assert client.head_manifest("docker.io/ratelimitpreview/test:latest") == first
    assert len(dockerhub_stub.requests) == seen  # no HTTP request at all

    client.clear_cache()
    assert client.head_manifest("ratelimitpreview/test").ok
    new = dockerhub_stub.requests[seen:]
    assert [(r.method, r.path) for r in new] == [
        ("HEAD", "/v2/ratelimitpreview/test/manifests/latest")
    ]

    tags_host = paginating_tags_stub.host
    tags_client = make_client(tags_host)
    tags_client.list_tags(f"{tags_host}/team/app", page_size=2)
    seen = len(paginating_tags_stub.requests)
    assert tags_client.list_tags(f"{tags_host}/team/app", page_size=2).tags == PAGINATED_TAGS
    assert len(paginating_tags_stub.requests) == seen

    uncached = make_client(tags_host, cache_ttl=0)
    uncached.list_tags(f"{tags_host}/team/app")
    uncached.list_tags(f"{tags_host}/team/app")
    assert len(paginating_tags_stub.requests) == seen + 2


# -- credentials never leak -------------------------------------------------------------------


def test_credentials_from_auth_field() -> None:
    auth = base64.b64encode(b"deploy-bot:pa:ss").decode()
    c = RegistryCredentials.from_auth(auth)
    assert (c.username, c.password) == ("deploy-bot", "pa:ss")
    assert "pa:ss" not in repr(c) and "pa:ss" not in str(c)
    unpadded = base64.b64encode(b"ab:c").decode().rstrip("=")  # some tools drop the padding
    assert RegistryCredentials.from_auth(unpadded) == RegistryCredentials("ab", "c")
    for bad in ("%%%not-base64", base64.b64encode(b"just-a-password").decode()):
        with pytest.raises(ValueError) as info:
            RegistryCredentials.from_auth(bad)
        assert bad not in str(info.value) and "just-a-password" not in str(info.value)


def test_no_secret_in_logs_results_or_errors(
    caplog: pytest.LogCaptureFixture,
    registry_auth: RegistryServer,
    registry_token: RegistryServer,
    dockerhub_stub: DockerHubStub,
    make_client: ClientFactory,
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = f"team/leak-{time.monotonic_ns()}"
    push_image(registry_auth, repo, "v1")
    push_image(registry_token, repo, "v1")
    push_image(registry_token, f"private/leak-{time.monotonic_ns()}", "v1")
    basic = creds(registry_auth.credentials)
    token_user = creds(registry_token.credentials)
    hub_user = RegistryCredentials(HUB_USER, HUB_PASSWORD)
    secrets_ = {DEPLOY_PASSWORD, HUB_PASSWORD, "wrong-pass-do-not-print"}

    results: list[object] = []
    client = make_client(registry_auth.host, registry_token.host)
    for c in (None, basic, RegistryCredentials(basic.username, "wrong-pass-do-not-print")):
        results.append(client.head_manifest(f"{registry_auth.host}/{repo}:v1", c))
        results.append(client.list_tags(f"{registry_auth.host}/{repo}", c))
        results.append(client.ping(registry_auth.host, c))
    for c in (
        None,
        token_user,
        RegistryCredentials(token_user.username, "wrong-pass-do-not-print"),
    ):
        results.append(client.head_manifest(f"{registry_token.host}/{repo}:v1", c))
        results.append(client.head_manifest(f"{registry_token.host}/private/leak:v1", c))
        results.append(client.list_tags(f"{registry_token.host}/{repo}", c))
    hub = _hub_client(make_client, dockerhub_stub)
    results.append(hub.head_manifest("ratelimitpreview/test", hub_user))
    for c in (None, hub_user, RegistryCredentials(HUB_USER, "wrong-pass-do-not-print")):
        quota = dockerhub_quota(c, auth_url=dockerhub_stub.realm, registry_url=dockerhub_stub.url)
        results.extend([quota, quota.describe()])
    assert any(isinstance(r, Probe) and r.ok for r in results)
    assert any(isinstance(r, Probe) and r.insufficient_scope for r in results)
    results.extend([basic, hub_user, client, client.settings])
    errors: list[str] = []
    for bad in (base64.b64encode(f"x{DEPLOY_PASSWORD}".encode()).decode(), DEPLOY_PASSWORD):
        try:
            RegistryCredentials.from_auth(bad)
        except ValueError as exc:
            errors.append(f"{exc!s} {exc!r}")

    hub_tokens = list(dockerhub_stub._tokens)
    assert hub_tokens, "the Docker Hub stub should have issued tokens"
    forbidden = secrets_ | set(hub_tokens)
    for c in (basic, token_user, hub_user):
        forbidden.add(c.basic_header().removeprefix("Basic "))
    haystack = "\n".join(
        [caplog.text, *(r.getMessage() for r in caplog.records), *errors]
        + [f"{r!r} {r!s}" for r in results]
    )
    assert "registry" in caplog.text  # the client did log (at debug)
    for secret in forbidden:
        assert secret not in haystack, "a credential or token leaked into logs/results"
    assert "eyJ" not in haystack, "a JWT (registry bearer token) leaked into logs/results"
