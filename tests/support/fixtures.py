"""pytest fixtures for real registries and stubs.

Enable in a conftest or test module with::

    pytest_plugins = ["tests.support.fixtures"]

Why session scope for registries: each `docker-registry` starts in ~30 ms but tests push
content, and sharing one process per variant keeps the suite fast. That is safe because every
test pushes to its own repository name (`unique_repo`) and nothing deletes content. Stubs are
per test so their request records and counters start empty.

If `docker-registry` is missing the registry fixtures fail (not skip) with a message naming
scripts/ensure-docker-registry.sh: a silently skipped integration suite proves nothing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.leaks import SECRETS
from tests.support.registry import (
    DEPLOY_PASSWORD,
    DEPLOY_USER,
    Credentials,
    RegistryServer,
    RegistryUnavailableError,
)
from tests.support.stubs import (
    HUB_PASSWORD,
    HUB_USER,
    PAGINATED_TAGS,
    BlackholeServer,
    DockerHubStub,
    PaginatingTagsStub,
    RateLimitedRegistryStub,
    closed_port,
)
from tests.support.tls import TlsMaterial, make_tls_material
from tests.support.tokens import AclEntry, TokenServer

SEED_USER = "seed-admin"
#: seed-admin's password: random per run, only ever held in memory.
_SEED_PASSWORD = secrets.token_urlsafe(16)
SECRETS.add(_SEED_PASSWORD, f"password of {SEED_USER} (tests/support/fixtures.py)")

#: Token-registry ACL: deploy-bot may pull team/*, anyone may pull public/*, seed-admin may
#: push and pull everything. So `private/...` is the "valid user, no access" case.
TOKEN_ACL = (
    AclEntry(DEPLOY_USER, "team/*", frozenset({"pull"})),
    AclEntry("", "public/*", frozenset({"pull"})),
    AclEntry(SEED_USER, "*", frozenset({"pull", "push"})),
)


def deploy_credentials() -> Credentials:
    """The known pull user every authenticated registry variant accepts."""
    return Credentials(DEPLOY_USER, DEPLOY_PASSWORD)


def _started(server: RegistryServer) -> RegistryServer:
    try:
        return server.start()
    except RegistryUnavailableError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside `except`: no chained duplicate in the report


def _workdir(factory: pytest.TempPathFactory, name: str) -> Path:
    return factory.mktemp(name, numbered=True)


# -- real registries --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP, anonymous pull and push."""
    server = _started(RegistryServer(_workdir(tmp_path_factory, "registry-plain"), name="plain"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP with htpasswd Basic auth; `credentials` is deploy-bot (pull and push)."""
    creds = deploy_credentials()
    server = _started(
        RegistryServer(
            _workdir(tmp_path_factory, "registry-auth"),
            name="auth",
            htpasswd_users={creds.username: creds.password},
            credentials=creds,
        )
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A generated CA and a 127.0.0.1/localhost server certificate."""
    return make_tls_material(_workdir(tmp_path_factory, "registry-tls-certs"))


@pytest.fixture(scope="session")
def registry_tls(
    tmp_path_factory: pytest.TempPathFactory, registry_tls_material: TlsMaterial
) -> Iterator[RegistryServer]:
    """HTTPS, anonymous; trust `ca_path` to connect, anything else fails x509 verification."""
    server = _started(
        RegistryServer(
            _workdir(tmp_path_factory, "registry-tls"), name="tls", tls=registry_tls_material
        )
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """The JWT issuer behind `registry_token` (users deploy-bot and seed-admin, TOKEN_ACL)."""
    users = {DEPLOY_USER: DEPLOY_PASSWORD, SEED_USER: _SEED_PASSWORD}
    server = TokenServer(_workdir(tmp_path_factory, "token-server"), users, TOKEN_ACL)
    with server:
        yield server


@pytest.fixture(scope="session")
def registry_token(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RegistryServer]:
    """HTTP with Bearer token auth via `token_server`.

    `credentials` = deploy-bot (pull on team/* only), `seed_credentials` = seed-admin (push
    anywhere). Pulling private/* as deploy-bot gives distribution's real 401
    `error="insufficient_scope"`; a wrong password is refused by the token endpoint (401).
    """
    seed = Credentials(SEED_USER, _SEED_PASSWORD)
    server = _started(
        RegistryServer(
            _workdir(tmp_path_factory, "registry-token"),
            name="token",
            token_server=token_server,
            credentials=deploy_credentials(),
            seed_credentials=seed,
        )
    )
    yield server
    server.stop()


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """A repository name no other test uses: `team/<test-name>-<random>` (lower-case, valid).

    The `team/` prefix is pullable by deploy-bot on `registry_token`.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"team/{slug or 'test'}-{secrets.token_hex(3)}"


# -- stubs ------------------------------------------------------------------------------------


@pytest.fixture
def dockerhub_stub() -> Iterator[DockerHubStub]:
    """Docker Hub stand-in with defaults (anonymous 100;w=21600, 76 left; user hubuser)."""
    with DockerHubStub(users={HUB_USER: HUB_PASSWORD}) as stub:
        yield stub


@pytest.fixture
def paginating_tags_stub() -> Iterator[PaginatingTagsStub]:
    """`team/app` with tags a..e, paginated when the client sends `n`."""
    with PaginatingTagsStub({"team/app": PAGINATED_TAGS}) as stub:
        yield stub


@pytest.fixture
def rate_limited_stub() -> Iterator[RateLimitedRegistryStub]:
    """Every manifest request gets 429 with `Retry-After: 2` and TOOMANYREQUESTS."""
    with RateLimitedRegistryStub(retry_after=2) as stub:
        yield stub


@pytest.fixture
def blackhole() -> Iterator[BlackholeServer]:
    """A loopback port that accepts connections and never answers."""
    with BlackholeServer() as server:
        yield server


@pytest.fixture
def refused_port() -> int:
    """A loopback port where connections are refused."""
    return closed_port()
