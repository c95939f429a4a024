"""A Docker-style token server for distribution's `auth: token` mode.

Why: token auth is what Docker Hub, GHCR, Harbor, Quay and GitLab use, and its refusals look
different from Basic auth: a bad password fails at the token endpoint, while a valid user without
access to a repository gets a token with no access and then a *registry* 401 with
`error="insufficient_scope"`. Only a real registry verifying real JWTs shows that faithfully.

The server follows the distribution token spec (docs/spec/auth/token.md, jwt.md): `GET /token`
with `service`, one or more `scope` params, optional Basic credentials; it answers
`{"token", "access_token", "expires_in", "issued_at"}`. Granted access is the intersection of
the requested actions with an ACL; no access is *not* an error (spec), the token just carries
an empty `access` list. JWTs are ES256 with a libtrust `kid`, which distribution 2.8 resolves
against the public keys of the certificates in `rootcertbundle`.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support._http import StubHandler, StubServer, parse_basic
from tests.support.leaks import SECRETS
from tests.support.tls import make_ca

ISSUER = "imagepull-bot-test-token-issuer"
SERVICE = "imagepull-bot-test-registry"
TOKEN_TTL_SECONDS = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The libtrust fingerprint distribution uses as JWT `kid`.

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without padding, in
    colon-separated groups of four (e.g. `PYYO:TEWU:...`).
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass(frozen=True)
class AclEntry:
    """`user` (or "" for anonymous) may do `actions` on repositories matching `repo_glob`."""

    user: str
    repo_glob: str
    actions: frozenset[str]


@dataclass(frozen=True)
class Scope:
    """A parsed `type:name:actions` scope (name may contain ':' e.g. a host:port prefix)."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> Scope | None:
        """Parse a scope string; None if it is not of the form type:name:actions."""
        kind, sep, rest = raw.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not kind or not name:
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))


class TokenServer(StubServer):
    """Issues registry JWTs per an ACL; the signing cert is written as the rootcertbundle.

    `users` maps username to password (kept in memory only, never logged). Requests with wrong
    credentials get 401 `{"details": "incorrect username or password"}`, like Docker Hub's
    auth server; anonymous requests are allowed and get what the ACL grants to user "".
    """

    def __init__(
        self,
        directory: Path,
        users: Mapping[str, str],
        acl: Iterable[AclEntry],
        *,
        issuer: str = ISSUER,
        service: str = SERVICE,
    ) -> None:
        super().__init__()
        self.issuer = issuer
        self.service = service
        self._users = dict(users)
        for user, password in self._users.items():
            SECRETS.add(password, f"token server password of {user}")
        self.acl = list(acl)
        self._key, cert = make_ca("imagepull-bot test token signer")
        self.key_id = libtrust_key_id(self._key.public_key())
        directory.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = directory / "token-signer.pem"
        self.rootcertbundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        """The URL the registry puts in its Bearer challenge."""
        return f"{self.url}/token"

    # -- policy ----------------------------------------------------------------------------
    def authenticate(self, basic: tuple[str, str] | None) -> str | None:
        """The user name for valid credentials, "" for anonymous, None for bad credentials."""
        if basic is None:
            return ""
        user, password = basic
        expected = self._users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return user

    def granted(self, user: str, scope: Scope) -> list[str]:
        """Requested actions the ACL allows `user` on `scope` (order kept, possibly empty)."""
        if scope.type != "repository":
            return []
        allowed: set[str] = set()
        for entry in self.acl:
            if entry.user == user and fnmatch.fnmatchcase(scope.name, entry.repo_glob):
                allowed |= entry.actions
        return [a for a in scope.actions if a in allowed or "*" in allowed]

    # -- minting ---------------------------------------------------------------------------
    def mint(self, user: str, access: list[dict[str, object]], audience: str) -> str:
        """An ES256 JWT distribution 2.8 accepts (iss/aud/exp/nbf/iat/jti/access claims)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": audience,
            "exp": now + TOKEN_TTL_SECONDS,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        token = f"{signing_input}.{_b64url(signature)}"
        SECRETS.add(token, f"registry JWT minted for {user or 'anonymous'}")
        return token

    class Handler(StubHandler):
        """`GET /token` only."""

        def handle_any(self, method: str) -> None:
            owner = self.server.owner
            assert isinstance(owner, TokenServer)
            if method != "GET" or self.req_path != "/token":
                self.send_json(404, {"details": "not found"})
                return
            user = owner.authenticate(parse_basic(self.auth_header))
            if user is None:
                self.send_json(
                    401,
                    {"details": "incorrect username or password"},
                    {"WWW-Authenticate": f'Basic realm="{owner.realm}"'},
                )
                return
            service = (self.req_query.get("service") or [owner.service])[0]
            access: list[dict[str, object]] = []
            for raw in self.req_query.get("scope", []):
                for part in raw.split(" "):  # some clients join scopes with spaces
                    scope = Scope.parse(part)
                    if scope is None:
                        continue
                    actions = owner.granted(user, scope)
                    if actions:
                        access.append({"type": scope.type, "name": scope.name, "actions": actions})
            token = owner.mint(user, access, service)
            issued = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            self.send_json(
                200,
                {
                    "token": token,
                    "access_token": token,
                    "expires_in": TOKEN_TTL_SECONDS,
                    "issued_at": issued,
                },
            )

    handler = Handler
