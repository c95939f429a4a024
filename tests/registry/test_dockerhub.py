"""bot.registry.dockerhub.dockerhub_quota against the Docker Hub stub (token endpoint +
manifest HEAD).

Why a stub: Docker Hub is not reachable from CI; DockerHubStub reproduces the documented wire
format (token JSON, `ratelimit-*` headers, `docker-ratelimit-source`) and counts only GETs
against the quota, as Docker Hub does, so a HEAD-only check is observable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.registry.dockerhub import Quota, dockerhub_quota, parse_ratelimit
from bot.registry.model import RegistryCredentials
from tests.support.stubs import HUB_PASSWORD, HUB_USER, BlackholeServer, DockerHubStub

pytest_plugins = ["tests.support.fixtures"]
pytestmark = pytest.mark.integration

HUB = RegistryCredentials(HUB_USER, HUB_PASSWORD)


def quota(stub: DockerHubStub, credentials: RegistryCredentials | None = None) -> Quota:
    return dockerhub_quota(credentials, auth_url=stub.realm, registry_url=stub.url, timeout=2.0)


@pytest.fixture
def unlimited_stub() -> Iterator[DockerHubStub]:
    with DockerHubStub(users={HUB_USER: HUB_PASSWORD}, unlimited=True) as stub:
        yield stub


def test_anonymous_quota_is_the_bots_ip(dockerhub_stub: DockerHubStub) -> None:
    q = quota(dockerhub_stub)
    assert q.ok, q.error
    assert (q.limit, q.remaining, q.window_seconds) == (100, 76, 21600)
    assert (q.source, q.authenticated, q.unlimited) == ("127.0.0.1", False, False)
    text = q.describe()
    assert "76 of 100 pulls" in text and "6-hour" in text
    assert "outbound IP" in text and "NAT" in text


def test_authenticated_quota_is_the_accounts(dockerhub_stub: DockerHubStub) -> None:
    q = quota(dockerhub_stub, HUB)
    assert (q.limit, q.remaining, q.authenticated) == (200, 76, True), q.error
    assert q.source == dockerhub_stub.account_id
    assert "account 'hubuser'" in q.describe() and "NAT" not in q.describe()
    token_requests = [r for r in dockerhub_stub.requests if r.path == "/token"]
    assert [(r.auth_scheme, r.auth_user) for r in token_requests] == [("Basic", HUB_USER)]
    assert token_requests[0].query == {
        "service": ["registry.docker.io"],
        "scope": ["repository:ratelimitpreview/test:pull"],
    }


def test_only_head_is_sent_so_no_quota_is_used(dockerhub_stub: DockerHubStub) -> None:
    quota(dockerhub_stub)
    quota(dockerhub_stub, HUB)
    manifest_requests = [r for r in dockerhub_stub.requests if "/manifests/" in r.path]
    assert [r.method for r in manifest_requests] == ["HEAD", "HEAD"]
    assert all(r.auth_scheme == "Bearer" for r in manifest_requests)
    assert manifest_requests[0].path == "/v2/ratelimitpreview/test/manifests/latest"
    assert dockerhub_stub.remaining == 76  # a GET would have used one


def test_no_headers_means_unlimited(unlimited_stub: DockerHubStub) -> None:
    q = quota(unlimited_stub, HUB)
    assert (q.unlimited, q.limit, q.remaining, q.error) == (True, None, None, None)
    assert "not pull-rate-limited" in q.describe()


def test_wrong_password(dockerhub_stub: DockerHubStub) -> None:
    q = quota(dockerhub_stub, RegistryCredentials(HUB_USER, "wrong-do-not-print"))
    assert not q.ok and q.status == 401 and q.limit is None
    assert "username or password" in (q.error or "")
    assert "wrong-do-not-print" not in f"{q!r} {q.describe()}"
    assert not [r for r in dockerhub_stub.requests if "/manifests/" in r.path]


def test_exhausted_quota() -> None:
    with DockerHubStub(rate_limited=True) as stub:
        q = quota(stub)
    assert (q.status, q.limit, q.remaining, q.error) == (429, 100, 0, None)
    assert "0 of 100 pulls" in q.describe()


def test_unreachable(refused_port: int, blackhole: BlackholeServer) -> None:
    refused = dockerhub_quota(auth_url=f"http://127.0.0.1:{refused_port}/token", timeout=1.0)
    assert not refused.ok and "refused" in (refused.error or "")
    assert "Could not read" in refused.describe()
    hung = dockerhub_quota(auth_url=f"{blackhole.url}/token", timeout=0.3)
    assert not hung.ok and "timeout" in (hung.error or "")


def test_registry_unreachable_after_token(dockerhub_stub: DockerHubStub, refused_port: int) -> None:
    q = dockerhub_quota(
        auth_url=dockerhub_stub.realm, registry_url=f"http://127.0.0.1:{refused_port}"
    )
    assert not q.ok and (q.error or "").startswith("registry unreachable")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("100;w=21600", (100, 21600)), ("76", (76, None)), ("", (None, None)), ("x", (None, None))],
)
def test_parse_ratelimit(value: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_ratelimit(value) == expected
