"""Image references parsed the way the kubelet and containerd parse them.

`docker-image-py` ports distribution's reference grammar, so "nginx" normalises to
"docker.io/library/nginx" exactly as the runtime does. Everything that needs a registry host,
repository path or tag goes through here instead of splitting strings by hand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from docker_image import reference as _ref

DOCKER_HUB = "docker.io"

#: Every way a Docker Hub registry is spelled in a dockerconfigjson `auths` key or an image.
DOCKER_HUB_SPELLINGS: frozenset[str] = frozenset(
    {
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "registry.hub.docker.com",
        "hub.docker.com",
    }
)


class InvalidImageReference(ValueError):
    """The image string is not a valid reference (the kubelet reports InvalidImageName)."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed, normalised image reference.

    `original` is kept verbatim: fix commands quote what the user wrote where that matters, and
    the normalised `name` where the registry is asked.
    """

    original: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """Fully qualified repository, e.g. docker.io/library/nginx."""
        return f"{self.registry}/{self.repository}"

    @property
    def is_docker_hub(self) -> bool:
        return self.registry in DOCKER_HUB_SPELLINGS

    @property
    def implicit_latest(self) -> bool:
        """No tag and no digest: the runtime silently asks for :latest."""
        return self.tag is None and self.digest is None

    @property
    def effective_tag(self) -> str:
        return self.tag or "latest"

    def with_tag(self, tag: str) -> str:
        """The user's spelling of this image with another tag (digest dropped)."""
        base = self.familiar_repository
        return f"{base}:{tag}"

    def with_digest(self, digest: str) -> str:
        return f"{self.familiar_repository}@{digest}"

    @property
    def familiar_repository(self) -> str:
        """The repository as people write it: `nginx`, `myorg/app`, `registry.internal/app`."""
        if self.is_docker_hub:
            repo = self.repository
            if repo.startswith("library/") and repo.count("/") == 1:
                return repo.removeprefix("library/")
            return repo
        return self.name


def parse_image(image: str) -> ImageRef:
    """Parse and normalise `image`; raise InvalidImageReference with distribution's reason."""
    try:
        parsed = _ref.Reference.parse_normalized_named(image.strip())
    except Exception as exc:  # the library raises several unrelated exception classes
        raise InvalidImageReference(f"{image!r}: {exc}") from exc
    registry, repository = parsed.split_hostname()
    return ImageRef(
        original=image,
        registry=str(registry),
        repository=str(repository),
        tag=parsed["tag"],
        digest=parsed["digest"],
    )


def try_parse_image(image: str) -> ImageRef | None:
    try:
        return parse_image(image)
    except InvalidImageReference:
        return None


def normalise_registry_key(key: str) -> str:
    """Turn a dockerconfigjson `auths` key into a bare registry host.

    Keys come as `https://index.docker.io/v1/`, `registry.internal:5000`, `http://host/v2/`...
    The kubelet matches them by host (and optional path prefix); all Docker Hub spellings
    collapse to `docker.io`.
    """
    host = key.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0].lower()
    if host in DOCKER_HUB_SPELLINGS:
        return DOCKER_HUB
    return host


def registry_matches(auths_key: str, registry: str) -> bool:
    """Whether a credentials key serves pulls from `registry` (both normalised)."""
    wanted = DOCKER_HUB if registry in DOCKER_HUB_SPELLINGS else registry.lower()
    return normalise_registry_key(auths_key) == wanted


#: Host name suffixes that only resolve inside a site or cluster (RFC 6762, RFC 8375,
#: Kubernetes' service names, and the private suffixes companies use).
_INTERNAL_SUFFIXES = (".local", ".localdomain", ".internal", ".lan", ".home.arpa", ".svc",
                      ".cluster.local", ".corp", ".intranet", ".private")


def is_external_registry(registry: str) -> bool:
    """Whether pulls from `registry` leave the site (and so may need the proxy): not
    localhost, not a private, loopback or link-local address, not a dot-less or site-only
    host name. A guess from the name alone; it only gates what the evidence must show."""
    host = registry.rsplit("@", 1)[-1]
    if host.startswith("["):  # [v6]:port
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or "." not in host:
            return False
        return not host.endswith(_INTERNAL_SUFFIXES)
    return address.is_global
