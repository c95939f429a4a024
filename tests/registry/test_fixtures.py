"""Proves the registry fixtures and stubs behave like the servers they stand for.

Why: the coming registry client (bot/registry/client.py) will be tested against these fixtures, so
each fixture is checked here with plain `http.client`/`urllib` — not the client under test —
against the wire behaviour the bot has to interpret. The exact distribution 2.8 responses
asserted below (challenges, error codes) are what was observed from the real server.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlencode

import pytest

from tests.support.registry import (
    DEPLOY_PASSWORD,
    DEPLOY_USER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Credentials,
    Platform,
    RegistryServer,
    parse_challenge,
    push_image,
    push_index,
)
from tests.support.stubs import (
    HUB_PASSWORD,
    HUB_USER,
    PAGINATED_TAGS,
    TOOMANYREQUESTS_BODY,
    BlackholeServer,
    DockerHubStub,
    PaginatingTagsStub,
    RateLimitedRegistryStub,
)
from tests.support.tls import untrusted_ssl_context
from tests.support.tokens import TokenServer

pytest_plugins = ["tests.support.fixtures"]
pytestmark = pytest.mark.integration

Response = tuple[int, dict[str, str], bytes]
UNAUTHORIZED_V2 = {
    "errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]
}


def call(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> Response:
    """One urllib request; HTTP errors are returned, not raised (status, lower headers, body)."""
    req = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def reg_call(
    registry: RegistryServer,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Response:
    """`call` against a fixture registry, trusting its CA when it has one."""
    return call(registry.url + path, method=method, headers=headers, context=registry.ssl_context())


def error_codes(body: bytes) -> list[str]:
    """The `code`s of a distribution error body."""
    return [e["code"] for e in json.loads(body)["errors"]]


def bearer_token(
    token_srv: TokenServer, scope: str, credentials: Credentials | None = None
) -> Response:
    """Ask the token server for `scope` (Basic credentials when given)."""
    query = urlencode({"service": token_srv.service, "scope": scope})
    headers = {"Authorization": credentials.basic_header()} if credentials else {}
    return call(f"{token_srv.realm}?{query}", headers=headers)


def token_header(
    token_srv: TokenServer, scope: str, credentials: Credentials | None
) -> dict[str, str]:
    """Authorization header with a fresh token for `scope`."""
    status, _, body = bearer_token(token_srv, scope, credentials)
    assert status == 200
    return {"Authorization": "Bearer " + json.loads(body)["token"], "Accept": MANIFEST_ACCEPT}


# -- plain ------------------------------------------------------------------------------------


def test_plain_registry_answers_v2_anonymously(registry_plain: RegistryServer) -> None:
    status, headers, body = reg_call(registry_plain, "/v2/")
    assert status == 200
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    assert json.loads(body) == {}
    assert registry_plain.running
    assert "GET /v2/" in registry_plain.log_path.read_text()


@pytest.mark.parametrize(
    "variant", ["registry_plain", "registry_auth", "registry_tls", "registry_token"]
)
@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_pushed_tag_is_listed_and_head_gives_the_pushed_digest(
    request: pytest.FixtureRequest, variant: str, media_type: str, unique_repo: str
) -> None:
    registry: RegistryServer = request.getfixturevalue(variant)
    digest = push_image(registry, unique_repo, "v1.2.3", media_type=media_type)
    assert digest.startswith("sha256:") and len(digest) == 71

    headers: dict[str, str] = {"Accept": MANIFEST_ACCEPT}
    if registry.auth_kind == "htpasswd":
        assert registry.credentials is not None
        headers["Authorization"] = registry.credentials.basic_header()
    elif registry.auth_kind == "token":
        assert registry.token_server is not None
        headers.update(
            token_header(
                registry.token_server, f"repository:{unique_repo}:pull", registry.credentials
            )
        )

    status, _, body = reg_call(registry, f"/v2/{unique_repo}/tags/list", headers=headers)
    assert status == 200
    assert json.loads(body) == {"name": unique_repo, "tags": ["v1.2.3"]}

    status, resp_headers, body = reg_call(
        registry, f"/v2/{unique_repo}/manifests/v1.2.3", method="HEAD", headers=headers
    )
    assert status == 200
    assert body == b""
    assert resp_headers["docker-content-digest"] == digest
    assert resp_headers["content-type"] == media_type


def test_unknown_tag_is_manifest_unknown(registry_plain: RegistryServer, unique_repo: str) -> None:
    push_image(registry_plain, unique_repo, "exists")
    status, headers, body = reg_call(
        registry_plain, f"/v2/{unique_repo}/manifests/nope", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert status == 404
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(body) == {
        "errors": [
            {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "nope"}}
        ]
    }


def test_unknown_repo_is_name_unknown_on_tags_but_manifest_unknown_on_manifests(
    registry_plain: RegistryServer,
) -> None:
    """Distribution 2.8 (filesystem storage) only says NAME_UNKNOWN on tags/list.

    A manifest request for a repository that does not exist gets MANIFEST_UNKNOWN, the same
    as a missing tag, so a client must ask tags/list to tell "no such repo" from "no such tag".
    """
    status, _, body = reg_call(registry_plain, "/v2/team/never-pushed/tags/list")
    assert status == 404
    assert json.loads(body) == {
        "errors": [
            {
                "code": "NAME_UNKNOWN",
                "message": "repository name not known to registry",
                "detail": {"name": "team/never-pushed"},
            }
        ]
    }
    status, _, body = reg_call(
        registry_plain, "/v2/team/never-pushed/manifests/v1", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert status == 404
    assert error_codes(body) == ["MANIFEST_UNKNOWN"]


def test_oci_manifest_without_oci_accept_is_reported_unknown(
    registry_plain: RegistryServer, unique_repo: str
) -> None:
    """A 2.8 pitfall for the client: no OCI type in Accept → 404 for an OCI image that exists."""
    push_image(registry_plain, unique_repo, "v1")
    status, _, body = reg_call(
        registry_plain, f"/v2/{unique_repo}/manifests/v1", headers={"Accept": DOCKER_MANIFEST}
    )
    assert status == 404
    assert json.loads(body)["errors"][0] == {
        "code": "MANIFEST_UNKNOWN",
        "message": "OCI manifest found, but accept header does not support OCI manifests",
    }


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_push_index_lists_each_platform(
    registry_plain: RegistryServer, unique_repo: str, index_type: str
) -> None:
    platforms: list[Platform] = [("linux", "amd64"), ("linux", "arm64", "v8")]
    digest = push_index(registry_plain, unique_repo, "multi", platforms, media_type=index_type)
    status, headers, body = reg_call(
        registry_plain, f"/v2/{unique_repo}/manifests/multi", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert status == 200
    assert headers["docker-content-digest"] == digest
    assert headers["content-type"] == index_type
    index = json.loads(body)
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    for entry in index["manifests"]:
        status, headers, _ = reg_call(
            registry_plain,
            f"/v2/{unique_repo}/manifests/{entry['digest']}",
            method="HEAD",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        assert status == 200
        assert headers["docker-content-digest"] == entry["digest"]


# -- htpasswd Basic ---------------------------------------------------------------------------


def test_basic_auth_challenges_then_accepts_credentials(registry_auth: RegistryServer) -> None:
    status, headers, body = reg_call(registry_auth, "/v2/")
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="imagepull-bot-test-auth"'
    assert json.loads(body) == UNAUTHORIZED_V2

    wrong = Credentials(DEPLOY_USER, "not-the-password")
    status, headers, body = reg_call(
        registry_auth, "/v2/", headers={"Authorization": wrong.basic_header()}
    )
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="imagepull-bot-test-auth"'

    assert registry_auth.credentials is not None
    assert registry_auth.credentials.username == DEPLOY_USER
    status, _, _ = reg_call(
        registry_auth, "/v2/", headers={"Authorization": registry_auth.credentials.basic_header()}
    )
    assert status == 200


def test_basic_auth_repository_challenge_names_the_repository(
    registry_auth: RegistryServer, unique_repo: str
) -> None:
    status, headers, body = reg_call(registry_auth, f"/v2/{unique_repo}/manifests/v1")
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="imagepull-bot-test-auth"'
    assert json.loads(body)["errors"][0]["detail"] == [
        {"Type": "repository", "Class": "", "Name": unique_repo, "Action": "pull"}
    ]


def test_secrets_never_reach_logs_or_reprs(
    registry_auth: RegistryServer, registry_token: RegistryServer
) -> None:
    push_image(registry_auth, "team/log-check", "v1")
    for registry in (registry_auth, registry_token):
        assert DEPLOY_PASSWORD not in registry.log_path.read_text()
        assert DEPLOY_PASSWORD not in repr(registry.credentials)
        assert DEPLOY_PASSWORD not in registry.config_path.read_text()


# -- TLS --------------------------------------------------------------------------------------


def test_tls_registry_works_with_its_ca(registry_tls: RegistryServer) -> None:
    assert registry_tls.url.startswith("https://127.0.0.1:")
    assert registry_tls.ca_path is not None and registry_tls.ca_path.is_file()
    context = ssl.create_default_context(cafile=str(registry_tls.ca_path))
    assert call(registry_tls.url + "/v2/", context=context)[0] == 200
    # The certificate also names localhost, as node configs often do.
    localhost = f"https://localhost:{registry_tls.port}/v2/"
    assert call(localhost, context=context)[0] == 200


def test_tls_registry_fails_verification_without_its_ca(registry_tls: RegistryServer) -> None:
    with pytest.raises(urllib.error.URLError) as info:
        call(registry_tls.url + "/v2/", context=untrusted_ssl_context())
    reason = info.value.reason
    assert isinstance(reason, ssl.SSLCertVerificationError)
    assert reason.verify_message == "unable to get local issuer certificate"


def test_tls_registry_rejects_plain_http(registry_tls: RegistryServer) -> None:
    status, _, body = call(f"http://{registry_tls.host}/v2/")
    assert status == 400
    assert b"Client sent an HTTP request to an HTTPS server" in body


# -- token auth -------------------------------------------------------------------------------


def test_token_registry_challenges_with_bearer_realm(
    registry_token: RegistryServer, token_server: TokenServer, unique_repo: str
) -> None:
    status, headers, body = reg_call(registry_token, "/v2/")
    assert status == 401
    assert headers["www-authenticate"] == (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}"'
    )
    assert json.loads(body) == UNAUTHORIZED_V2

    status, headers, _ = reg_call(registry_token, f"/v2/{unique_repo}/manifests/v1")
    assert status == 401
    scheme, params = parse_challenge(headers["www-authenticate"])
    assert (scheme, params) == (
        "bearer",
        {
            "realm": token_server.realm,
            "service": token_server.service,
            "scope": f"repository:{unique_repo}:pull",
        },
    )


def test_token_grants_pull_to_the_known_user(
    registry_token: RegistryServer, token_server: TokenServer, unique_repo: str
) -> None:
    digest = push_image(registry_token, unique_repo, "v1")
    status, resp_headers, body = bearer_token(
        token_server, f"repository:{unique_repo}:pull", registry_token.credentials
    )
    assert status == 200
    payload = json.loads(body)
    assert set(payload) == {"token", "access_token", "expires_in", "issued_at"}
    assert payload["token"] == payload["access_token"] and payload["expires_in"] == 300

    headers = {"Authorization": f"Bearer {payload['token']}", "Accept": MANIFEST_ACCEPT}
    status, resp_headers, _ = reg_call(
        registry_token, f"/v2/{unique_repo}/manifests/v1", method="HEAD", headers=headers
    )
    assert status == 200
    assert resp_headers["docker-content-digest"] == digest


def test_token_endpoint_refuses_a_wrong_password(
    registry_token: RegistryServer, token_server: TokenServer, unique_repo: str
) -> None:
    status, _, body = bearer_token(
        token_server, f"repository:{unique_repo}:pull", Credentials(DEPLOY_USER, "pw-typo-7f3a")
    )
    assert status == 401
    assert json.loads(body) == {"details": "incorrect username or password"}
    recorded = token_server.requests[-1]
    assert recorded.auth_user == DEPLOY_USER
    assert "pw-typo-7f3a" not in repr(recorded)


def test_valid_user_without_access_gets_insufficient_scope(
    registry_token: RegistryServer, token_server: TokenServer
) -> None:
    """What distribution does for "authenticated but not allowed": 401, not 403.

    The token server issues a token with an empty `access` list (the spec says that is not an
    error); the registry then answers 401 with `error="insufficient_scope"` in the challenge.
    """
    push_image(registry_token, "private/payroll", "v1")
    headers = token_header(
        token_server, "repository:private/payroll:pull", registry_token.credentials
    )
    status, resp_headers, body = reg_call(
        registry_token, "/v2/private/payroll/manifests/v1", headers=headers
    )
    assert status == 401
    assert resp_headers["www-authenticate"] == (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}",'
        'scope="repository:private/payroll:pull",error="insufficient_scope"'
    )
    assert json.loads(body) == {
        "errors": [
            {
                "code": "UNAUTHORIZED",
                "message": "authentication required",
                "detail": [
                    {"Type": "repository", "Class": "", "Name": "private/payroll", "Action": "pull"}
                ],
            }
        ]
    }


def test_anonymous_token_pulls_public_repositories_only(
    registry_token: RegistryServer, token_server: TokenServer
) -> None:
    digest = push_image(registry_token, "public/base", "v1")
    headers = token_header(token_server, "repository:public/base:pull", None)
    status, resp_headers, _ = reg_call(
        registry_token, "/v2/public/base/manifests/v1", method="HEAD", headers=headers
    )
    assert (status, resp_headers["docker-content-digest"]) == (200, digest)
    headers = token_header(token_server, "repository:team/anything:pull", None)
    status, _, _ = reg_call(registry_token, "/v2/team/anything/manifests/v1", headers=headers)
    assert status == 401


# -- Docker Hub stub --------------------------------------------------------------------------


def hub_token(
    hub: DockerHubStub, repo: str, user: str | None = None, password: str | None = None
) -> Response:
    """GET the stub's /token the way Docker's docs show (anonymous or Basic)."""
    query = urlencode({"service": "registry.docker.io", "scope": f"repository:{repo}:pull"})
    headers = {}
    if user is not None and password is not None:
        headers["Authorization"] = Credentials(user, password).basic_header()
    return call(f"{hub.realm}?{query}", headers=headers)


def hub_head(hub: DockerHubStub, repo: str, token: str, method: str = "HEAD") -> Response:
    """HEAD (or GET) a manifest with a Bearer token."""
    return call(
        f"{hub.url}/v2/{repo}/manifests/latest",
        method=method,
        headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT},
    )


def test_dockerhub_stub_anonymous_rate_limit_headers(dockerhub_stub: DockerHubStub) -> None:
    status, _, body = hub_token(dockerhub_stub, "library/nginx")
    assert status == 200
    payload = json.loads(body)
    assert set(payload) == {"token", "access_token", "expires_in", "issued_at"}
    assert payload["expires_in"] == 300

    status, headers, body = hub_head(dockerhub_stub, "library/nginx", payload["token"])
    assert status == 200 and body == b""
    assert headers["ratelimit-limit"] == "100;w=21600"
    assert headers["ratelimit-remaining"] == "76;w=21600"
    assert headers["docker-ratelimit-source"] == "127.0.0.1"
    assert headers["docker-content-digest"].startswith("sha256:")
    assert headers["content-type"] == DOCKER_MANIFEST

    assert [(r.method, r.path) for r in dockerhub_stub.requests] == [
        ("GET", "/token"),
        ("HEAD", "/v2/library/nginx/manifests/latest"),
    ]
    assert dockerhub_stub.requests[1].auth_scheme == "Bearer"
    assert payload["token"] not in repr(dockerhub_stub.requests)


def test_dockerhub_stub_counts_gets_not_heads(dockerhub_stub: DockerHubStub) -> None:
    token = json.loads(hub_token(dockerhub_stub, "library/nginx")[2])["token"]
    hub_head(dockerhub_stub, "library/nginx", token)
    assert hub_head(dockerhub_stub, "library/nginx", token)[1]["ratelimit-remaining"] == (
        "76;w=21600"
    )
    hub_head(dockerhub_stub, "library/nginx", token, method="GET")
    assert hub_head(dockerhub_stub, "library/nginx", token)[1]["ratelimit-remaining"] == (
        "75;w=21600"
    )


def test_dockerhub_stub_authenticated_limit_and_bad_password(
    dockerhub_stub: DockerHubStub,
) -> None:
    status, _, _ = hub_token(dockerhub_stub, "library/nginx", HUB_USER, "nope")
    assert status == 401
    status, _, body = hub_token(dockerhub_stub, "library/nginx", HUB_USER, HUB_PASSWORD)
    assert status == 200
    _, headers, _ = hub_head(dockerhub_stub, "library/nginx", json.loads(body)["token"])
    assert headers["ratelimit-limit"] == "200;w=21600"
    assert headers["docker-ratelimit-source"] == dockerhub_stub.account_id
    assert dockerhub_stub.requests[-2].auth_user == HUB_USER


def test_dockerhub_stub_requires_a_token(dockerhub_stub: DockerHubStub) -> None:
    status, headers, body = call(
        f"{dockerhub_stub.url}/v2/library/nginx/manifests/latest", method="GET"
    )
    assert status == 401
    assert headers["www-authenticate"] == (
        f'Bearer realm="{dockerhub_stub.realm}",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert error_codes(body) == ["UNAUTHORIZED"]


def test_dockerhub_stub_unlimited_sends_no_rate_headers() -> None:
    with DockerHubStub(unlimited=True) as hub:
        token = json.loads(hub_token(hub, "library/nginx")[2])["token"]
        status, headers, _ = hub_head(hub, "library/nginx", token)
    assert status == 200
    assert not [h for h in headers if "ratelimit" in h]


def test_dockerhub_stub_rate_limited_429() -> None:
    with DockerHubStub(rate_limited=True, retry_after=120) as hub:
        token = json.loads(hub_token(hub, "library/nginx")[2])["token"]
        status, headers, body = hub_head(hub, "library/nginx", token, method="GET")
    assert status == 429
    assert headers["retry-after"] == "120"
    assert headers["ratelimit-remaining"] == "0;w=21600"
    assert json.loads(body) == TOOMANYREQUESTS_BODY
    assert json.loads(body)["errors"][0]["message"].startswith(
        "You have reached your pull rate limit."
    )


def test_dockerhub_stub_private_repo_and_missing_tag() -> None:
    with DockerHubStub(repos={"library/nginx"}, missing_tags={"latest"}) as hub:
        token = json.loads(hub_token(hub, "acme/private")[2])["token"]
        status, headers, _ = hub_head(hub, "acme/private", token)
        assert status == 401
        assert headers["www-authenticate"].endswith(',error="insufficient_scope"')
        token = json.loads(hub_token(hub, "library/nginx")[2])["token"]
        status, _, body = hub_head(hub, "library/nginx", token, method="GET")
    assert status == 404
    assert error_codes(body) == ["MANIFEST_UNKNOWN"]


# -- pagination, rate limits, dead hosts ------------------------------------------------------


def test_paginating_stub_follows_the_spec_link_header(
    paginating_tags_stub: PaginatingTagsStub,
) -> None:
    base = paginating_tags_stub.url
    seen: list[str] = []
    links: list[str | None] = []
    path: str | None = "/v2/team/app/tags/list?n=2"
    while path is not None:
        status, headers, body = call(base + path)
        assert status == 200
        seen += json.loads(body)["tags"]
        link = headers.get("link")
        links.append(link)
        path = link.split(">")[0].lstrip("<") if link else None
    assert seen == list(PAGINATED_TAGS)
    assert links == [
        '</v2/team/app/tags/list?n=2&last=b>; rel="next"',
        '</v2/team/app/tags/list?n=2&last=d>; rel="next"',
        None,
    ]
    status, headers, body = call(base + "/v2/team/app/tags/list")
    assert json.loads(body)["tags"] == list(PAGINATED_TAGS) and "link" not in headers
    status, _, body = call(base + "/v2/team/other/tags/list")
    assert status == 404 and error_codes(body) == ["NAME_UNKNOWN"]


def test_rate_limited_stub_answers_429(rate_limited_stub: RateLimitedRegistryStub) -> None:
    assert call(rate_limited_stub.url + "/v2/")[0] == 200
    status, headers, body = call(rate_limited_stub.url + "/v2/team/app/manifests/v1", method="HEAD")
    assert status == 429
    assert headers["retry-after"] == "2"
    status, _, body = call(rate_limited_stub.url + "/v2/team/app/manifests/v1")
    assert json.loads(body) == TOOMANYREQUESTS_BODY


def test_rate_limited_stub_recovers_after_n_requests() -> None:
    with RateLimitedRegistryStub(limited_requests=1) as stub:
        assert call(stub.url + "/v2/team/app/manifests/v1")[0] == 429
        status, headers, _ = call(stub.url + "/v2/team/app/manifests/v1")
    assert status == 200 and headers["docker-content-digest"].startswith("sha256:")


def test_blackhole_times_out(blackhole: BlackholeServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", blackhole.port, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.request("GET", "/v2/")
        conn.getresponse()
    conn.close()
    assert 0.25 < time.monotonic() - started < 2.0
    assert blackhole.connections >= 1


def test_refused_port_refuses(refused_port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", refused_port, timeout=2)
    with pytest.raises(ConnectionRefusedError):
        conn.request("GET", "/v2/")
    conn.close()
