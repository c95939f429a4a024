"""A read-only OCI distribution endpoint for scenario registries (the demo's Docker Hub).

The demo must show what the registry adds to a diagnosis (the tag that exists, the swapped
path) on a machine with only Python, so each scenario may declare its registries' contents and
this serves them with the distribution API's real shapes: `GET /v2/`, `tags/list`, manifest
`HEAD`/`GET` with `Docker-Content-Digest`, the `MANIFEST_UNKNOWN` / `NAME_UNKNOWN` /
`UNAUTHORIZED` error bodies and a Basic challenge for private repositories. Tests of the
registry client run against Debian's real docker-registry instead (tests/support/).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from bot.sim.lifecycle import HTTPListener, LoopbackService

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


@dataclass
class Repository:
    tags: list[str]
    users: dict[str, str] = field(default_factory=dict)  # empty: anonymous pulls allowed

    def digest(self, name: str, tag: str) -> str:
        return "sha256:" + hashlib.sha256(self.manifest(name, tag)).hexdigest()

    @staticmethod
    def manifest(name: str, tag: str) -> bytes:
        seed = hashlib.sha256(f"{name}:{tag}".encode()).hexdigest()
        return json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{seed}", "size": 2},
            "layers": [],
        }, sort_keys=True).encode()


def _repositories(spec: Mapping[str, Any]) -> dict[str, Repository]:
    repos: dict[str, Repository] = {}
    for name, value in spec.items():
        if isinstance(value, Mapping):
            users = {str(k): str(v) for k, v in (value.get("users") or {}).items()}
            repos[name] = Repository([str(t) for t in value.get("tags") or []], users)
        else:
            repos[name] = Repository([str(t) for t in value or []])
    return repos


class SimRegistry(LoopbackService):
    """One registry host's repositories, served on a free loopback port."""

    def __init__(self, name: str, repositories: Mapping[str, Any]) -> None:
        self.name = name  # the registry host it stands in for, e.g. docker.io
        self.repositories = _repositories(repositories)
        self._listener = HTTPListener(self.host, f"sim-registry-{name}")

    @property
    def port(self) -> int:
        if not self._listener.serving:
            raise RuntimeError("SimRegistry is not started")
        return self._listener.port

    def start(self) -> SimRegistry:
        registry = self

        class Handler(_Handler):
            sim = registry

        self._listener.serve(Handler)
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection (a client's pooled ones too)."""
        self._listener.close()


class _Handler(BaseHTTPRequestHandler):
    # Headers and body leave in separate writes; with Nagle on, the client's delayed ACK
    # adds ~40 ms to every request (a 10x slower demo and test suite).
    disable_nagle_algorithm = True
    sim: SimRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo prints diagnoses, not access logs."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            self._json(200, {}, head)
            return
        tags = _TAGS.match(path)
        manifest = _MANIFEST.match(path)
        matched = tags or manifest
        if matched is None:
            self._error(404, "NOT_FOUND", "page not found", head)
            return
        name = matched.group("name")
        repo = self.sim.repositories.get(name)
        if repo is not None and repo.users and not self._authorised(repo):
            self._error(401, "UNAUTHORIZED", "authentication required", head,
                        {"WWW-Authenticate": f'Basic realm="{self.sim.name}"'})
            return
        if tags:
            if repo is None:
                self._error(404, "NAME_UNKNOWN", "repository name not known to registry", head)
            else:
                self._json(200, {"name": name, "tags": repo.tags}, head)
            return
        assert manifest is not None
        ref = manifest.group("ref")
        found = repo is not None and (ref in repo.tags or any(
            repo.digest(name, t) == ref for t in repo.tags))
        if not found or repo is None:
            self._error(404, "MANIFEST_UNKNOWN", "manifest unknown", head)
            return
        tag = ref if ref in repo.tags else next(t for t in repo.tags
                                                if repo.digest(name, t) == ref)
        body = repo.manifest(name, tag)
        self._send(200, body, head, {"Content-Type": MANIFEST_TYPE,
                                     "Docker-Content-Digest": repo.digest(name, tag)})

    def _authorised(self, repo: Repository) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return repo.users.get(user) == password

    def _error(self, status: int, code: str, message: str, head: bool,
               headers: Mapping[str, str] | None = None) -> None:
        self._json(status, {"errors": [{"code": code, "message": message, "detail": None}]},
                   head, headers)

    def _json(self, status: int, payload: object, head: bool,
              headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), head,
                   {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def _send(self, status: int, body: bytes, head: bool, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


@contextmanager
def scenario_registries(registries: Mapping[str, Mapping[str, Any]]) -> Iterator[dict[str, str]]:
    """Serve a scenario's `registries:` and yield host → base URL (the REGISTRY_ENDPOINTS map)."""
    with ExitStack() as stack:
        yield {host: stack.enter_context(SimRegistry(host, repos)).url
               for host, repos in registries.items()}
