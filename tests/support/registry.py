"""Real CNCF distribution (`docker-registry` 2.8.x) servers on loopback, and seeding helpers.

Why real servers: the registry client must be right about what registries actually send — the
exact challenge headers, error codes (`MANIFEST_UNKNOWN` vs `NAME_UNKNOWN`), TLS failures and
token-scope refusals. Each `RegistryServer` is a `docker-registry serve <config.yml>` process
with its own generated config, filesystem storage and log file in a temp dir, bound to a free
`127.0.0.1` port, and killed on teardown.

Content is seeded through the registry HTTP API (`push_image`, `push_index`), not a docker CLI,
so tests need nothing but the `docker-registry` binary (see scripts/ensure-docker-registry.sh).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlencode, urlsplit

import yaml

from tests.support.serve import free_port
from tests.support.tls import TlsMaterial
from tests.support.tokens import TokenServer

REGISTRY_BINARY = "docker-registry"
ENSURE_SCRIPT = "scripts/ensure-docker-registry.sh"

DEPLOY_USER = "deploy-bot"
DEPLOY_PASSWORD = "s3cr3t-do-not-print"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: Accept header that makes distribution 2.8 return any manifest kind as stored. Without OCI
#: types in Accept, 2.8 answers an OCI manifest with 404 MANIFEST_UNKNOWN.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

AuthKind = Literal["none", "htpasswd", "token"]
Platform = tuple[str, str] | tuple[str, str, str]
"""(os, architecture) or (os, architecture, variant), e.g. ("linux", "arm64", "v8")."""


class RegistryUnavailableError(RuntimeError):
    """`docker-registry` is not installed, or a server did not come up (message says which)."""


@dataclass(frozen=True)
class Credentials:
    """A username and password; the password is left out of repr so it never reaches logs."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        """The `Authorization` header value for HTTP Basic."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class HttpResponse:
    """Status, lower-cased headers and body of one response from `registry_request`."""

    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


def _die_with_parent() -> None:
    """Child-side hook: ask Linux to SIGTERM the registry if the test process dies.

    Why: teardown does not run when pytest is killed (CI timeout, Ctrl-C twice); without this
    an orphaned registry keeps its port and temp dir. No-op where prctl is unavailable.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def registry_binary() -> str:
    """Path of `docker-registry`, or RegistryUnavailableError saying how to install it."""
    path = shutil.which(REGISTRY_BINARY)
    if path is None:
        raise RegistryUnavailableError(
            f"`{REGISTRY_BINARY}` is not on PATH: run `{ENSURE_SCRIPT}` as root "
            "(it apt-installs Debian's docker-registry, the CNCF distribution 2.8 server)"
        )
    return path


def write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    """Write a bcrypt htpasswd file (the only hash distribution accepts).

    Cost 4 (bcrypt's minimum) keeps each registry login at well under a millisecond; the
    registry reads the cost from the hash itself.
    """
    import bcrypt  # local import: only registries with auth need it

    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode('ascii')}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


class RegistryServer:
    """One `docker-registry serve` process on 127.0.0.1 with generated config and storage.

    Attributes tests use: `url` (`http[s]://127.0.0.1:<port>`), `host` (`127.0.0.1:<port>`,
    the registry part of an image reference), `ca_path` (TLS only), `credentials` (the known
    pull user, None when anonymous), `seed_credentials` (what `push_image` uses by default),
    `log_path`, `auth_kind`, `token_server` (token auth only).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "registry",
        htpasswd_users: Mapping[str, str] | None = None,
        tls: TlsMaterial | None = None,
        token_server: TokenServer | None = None,
        credentials: Credentials | None = None,
        seed_credentials: Credentials | None = None,
    ) -> None:
        if htpasswd_users and token_server:
            raise ValueError("choose htpasswd or token auth, not both")
        self.name = name
        self.workdir = workdir
        self.tls = tls
        self.token_server = token_server
        self._htpasswd_users = dict(htpasswd_users or {})
        self.auth_kind: AuthKind = (
            "token" if token_server else "htpasswd" if htpasswd_users else "none"
        )
        self.credentials = credentials
        self.seed_credentials = seed_credentials if seed_credentials is not None else credentials
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        """`https` when TLS is configured, else `http`."""
        return "https" if self.tls else "http"

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        return f"{self.scheme}://{self.host}"

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate a client must trust (TLS registries only)."""
        return self.tls.ca_path if self.tls else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context trusting this registry's CA; None for plain HTTP."""
        return self.tls.client_context() if self.tls else None

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A fresh http.client connection to this registry (trusting its CA for TLS)."""
        if self.tls:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=self.ssl_context()
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    # -- config ----------------------------------------------------------------------------
    def config(self) -> dict[str, object]:
        """The distribution config for the current port (written to `config_path`)."""
        http_cfg: dict[str, object] = {
            "addr": self.host,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            http_cfg["tls"] = {
                "certificate": str(self.tls.cert_path),
                "key": str(self.tls.key_path),
            }
        cfg: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http_cfg,
        }
        if self.auth_kind == "htpasswd":
            cfg["auth"] = {
                "htpasswd": {
                    "realm": f"imagepull-bot-test-{self.name}",
                    "path": str(self.workdir / "htpasswd"),
                }
            }
        elif self.token_server is not None:
            cfg["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.token_server.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": str(self.token_server.rootcertbundle),
                }
            }
        return cfg

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, ready_timeout: float = 15.0) -> Self:
        """Start the process and wait until `GET /v2/` answers (any status).

        Retries on a new port if the one picked was taken in between (the only race in
        `free_port`). Raises RegistryUnavailableError with the log tail otherwise.
        """
        binary = registry_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        if self.auth_kind == "htpasswd":
            write_htpasswd(self.workdir / "htpasswd", self._htpasswd_users)
        last_error = ""
        for _attempt in range(3):
            self.port = free_port()
            self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [binary, "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            try:
                self._wait_ready(ready_timeout)
                return self
            except RegistryUnavailableError as exc:
                last_error = str(exc)
                self.stop()
                if "address already in use" not in last_error:
                    break
        raise RegistryUnavailableError(last_error)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RegistryUnavailableError(
                    f"{self.name}: docker-registry exited with {self._proc.returncode}; "
                    f"log tail:\n{self.log_tail()}"
                )
            conn = self.connection(timeout=1.0)
            try:
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise RegistryUnavailableError(
                    f"{self.name}: no answer on {self.url}/v2/ after {timeout:.0f}s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after 5 s); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the registry log (it never contains passwords)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RegistryServer({self.name!r}, url={self.url!r}, auth={self.auth_kind!r})"


# -- HTTP with the registry auth dance --------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split `Bearer realm="...",service="..."` into ("bearer", {"realm": ..., ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().strip(",").strip().lower()
        if eq + 1 < len(rest) and rest[eq + 1] == '"':
            end = rest.find('"', eq + 2)
            end = len(rest) if end < 0 else end
            params[key] = rest[eq + 2 : end]
            i = end + 1
        else:
            end = rest.find(",", eq + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[eq + 1 : end].strip()
            i = end
        while i < len(rest) and rest[i] in ", ":
            i += 1
    return scheme.lower(), params


def _raw_request(
    registry: RegistryServer,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    conn = registry.connection(timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body or method in ("POST", "PUT", "PATCH"):
            hdrs.setdefault("Content-Length", str(len(body)))
        conn.request(method, path, body=body or None, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def fetch_bearer_token(
    registry: RegistryServer,
    challenge: Mapping[str, str],
    scope: str,
    credentials: Credentials | None,
) -> str:
    """Get a token from the realm of a Bearer challenge for `scope` (Basic creds if given)."""
    realm = urlsplit(challenge["realm"])
    query = {"service": challenge.get("service", ""), "scope": scope}
    conn: http.client.HTTPConnection
    if realm.scheme == "https":
        conn = http.client.HTTPSConnection(realm.netloc, timeout=10, context=registry.ssl_context())
    else:
        conn = http.client.HTTPConnection(realm.netloc, timeout=10)
    try:
        headers = {"Authorization": credentials.basic_header()} if credentials else {}
        conn.request("GET", f"{realm.path}?{urlencode(query)}", headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        who = credentials.username if credentials else "anonymous"
        raise PermissionError(f"token endpoint refused {who} for {scope}: HTTP {resp.status}")
    payload = json.loads(data)
    return str(payload.get("token") or payload["access_token"])


def authorization_for(
    registry: RegistryServer,
    repo: str,
    actions: Sequence[str],
    credentials: Credentials | None,
) -> str | None:
    """The Authorization header to use for `actions` on `repo`, following the /v2/ challenge.

    Basic registries get Basic credentials; token registries get a Bearer token from the realm
    named in the challenge (the same discovery a real client does); open registries get None.
    """
    probe = _raw_request(registry, "GET", "/v2/")
    if probe.status != 401:
        return None
    scheme, params = parse_challenge(probe.headers.get("www-authenticate", ""))
    if scheme == "basic":
        return credentials.basic_header() if credentials else None
    if scheme == "bearer":
        scope = f"repository:{repo}:{','.join(actions)}"
        return "Bearer " + fetch_bearer_token(registry, params, scope, credentials)
    raise ValueError(f"unsupported challenge scheme {scheme!r}")


def registry_request(
    registry: RegistryServer,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    authorization: str | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    """One request to the registry with an optional ready-made Authorization header."""
    hdrs = dict(headers or {})
    if authorization:
        hdrs["Authorization"] = authorization
    return _raw_request(registry, method, path, body=body, headers=hdrs, timeout=timeout)


# -- seeding content --------------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>`, the content address distribution uses."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tiny_layer(text: str) -> tuple[bytes, str]:
    """A reproducible gzipped tar with one small file; returns (blob, diff_id)."""
    raw = io.BytesIO()
    data = text.encode()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("imagepull-bot-test.txt")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha256_digest(tar_bytes)


class _Pusher:
    """Pushes blobs and manifests to one repository with one Authorization header."""

    def __init__(
        self, registry: RegistryServer, repo: str, credentials: Credentials | None
    ) -> None:
        self.registry = registry
        self.repo = repo
        creds = credentials if credentials is not None else registry.seed_credentials
        self.authorization = authorization_for(registry, repo, ("pull", "push"), creds)

    def _request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        return registry_request(
            self.registry,
            method,
            path,
            body=body,
            headers=headers,
            authorization=self.authorization,
        )

    @staticmethod
    def _check(resp: HttpResponse, expected: int, what: str) -> None:
        if resp.status != expected:
            raise RuntimeError(
                f"{what}: expected HTTP {expected}, got {resp.status}: "
                f"{resp.body[:500].decode(errors='replace')}"
            )

    def blob(self, data: bytes) -> str:
        """Upload with POST (start) + PUT ?digest= (monolithic); returns the digest."""
        digest = sha256_digest(data)
        head = self._request("HEAD", f"/v2/{self.repo}/blobs/{digest}")
        if head.status == 200:
            return digest
        start = self._request("POST", f"/v2/{self.repo}/blobs/uploads/")
        self._check(start, 202, f"start upload to {self.repo}")
        location = urlsplit(start.headers["location"])
        sep = "&" if location.query else "?"
        target = f"{location.path}?{location.query}" if location.query else location.path
        put = self._request(
            "PUT",
            f"{target}{sep}{urlencode({'digest': digest})}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check(put, 201, f"upload blob {digest} to {self.repo}")
        return digest

    def manifest(self, reference: str, media_type: str, payload: bytes) -> str:
        """PUT a manifest under a tag or digest; returns the registry's Docker-Content-Digest."""
        resp = self._request(
            "PUT",
            f"/v2/{self.repo}/manifests/{reference}",
            body=payload,
            headers={"Content-Type": media_type},
        )
        self._check(resp, 201, f"put manifest {self.repo}:{reference}")
        digest = resp.headers["docker-content-digest"]
        if digest != sha256_digest(payload):
            raise RuntimeError(f"registry digest {digest} != sha256 of the pushed manifest")
        return digest

    def image(self, platform: Platform, label: str, oci: bool) -> tuple[bytes, str, str]:
        """Push config + layer blobs; return (manifest bytes, media type, digest)."""
        os_name, arch = platform[0], platform[1]
        layer, diff_id = _tiny_layer(f"{label} {'/'.join(platform)}\n")
        config: dict[str, object] = {
            "architecture": arch,
            "os": os_name,
            "created": "1970-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {"Labels": {"org.opencontainers.image.title": label}},
        }
        if len(platform) == 3:
            config["variant"] = platform[2]
        config_bytes = json.dumps(config, sort_keys=True).encode()
        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                "digest": self.blob(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                    "digest": self.blob(layer),
                    "size": len(layer),
                }
            ],
        }
        payload = json.dumps(manifest, indent=2).encode()
        return payload, media_type, sha256_digest(payload)


def push_image(
    registry: RegistryServer,
    repo: str,
    tag: str,
    *,
    platform: Platform = ("linux", "amd64"),
    credentials: Credentials | None = None,
    media_type: str = OCI_MANIFEST,
) -> str:
    """Push a tiny single-platform image as `repo:tag`; returns its manifest digest.

    `media_type` is OCI_MANIFEST (default) or DOCKER_MANIFEST (Docker v2 schema 2).
    `credentials` default to `registry.seed_credentials` (for token registries a user with push
    rights on every repository). The image is one ~150-byte layer plus a config blob.
    """
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise ValueError(f"unsupported image manifest type {media_type!r}")
    pusher = _Pusher(registry, repo, credentials)
    payload, mt, _ = pusher.image(platform, f"{repo}:{tag}", oci=media_type == OCI_MANIFEST)
    return pusher.manifest(tag, mt, payload)


def push_index(
    registry: RegistryServer,
    repo: str,
    tag: str,
    platforms: Sequence[Platform],
    *,
    credentials: Credentials | None = None,
    media_type: str = OCI_INDEX,
) -> str:
    """Push a multi-platform image (one child manifest per platform) as `repo:tag`.

    Children are pushed by digest first (distribution checks an index's references exist).
    `media_type` is OCI_INDEX (default, OCI children) or DOCKER_MANIFEST_LIST (Docker children).
    Returns the index digest (what `Docker-Content-Digest` says for the tag).
    """
    if media_type not in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        raise ValueError(f"unsupported index type {media_type!r}")
    if not platforms:
        raise ValueError("an index needs at least one platform")
    oci = media_type == OCI_INDEX
    pusher = _Pusher(registry, repo, credentials)
    entries: list[dict[str, object]] = []
    for platform in platforms:
        payload, mt, digest = pusher.image(platform, f"{repo}:{tag}", oci=oci)
        pusher.manifest(digest, mt, payload)
        plat: dict[str, str] = {"architecture": platform[1], "os": platform[0]}
        if len(platform) == 3:
            plat["variant"] = platform[2]
        entries.append({"mediaType": mt, "digest": digest, "size": len(payload), "platform": plat})
    index = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return pusher.manifest(tag, media_type, json.dumps(index, indent=2).encode())
